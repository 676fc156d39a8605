"""A playlist: track 1 plays at High priority while track 2 preloads at Low priority, and
playback moves on to track 2 with no gap (at any sample rate or channel count: each track is
resampled and mapped to the output).

    python examples/playlist.py [URL1 URL2]   (no URLs: two generated tracks served locally)
"""

import contextlib
import sys

import kithara_io
from _support import local_music
from kithara_io.playback import Player


def main(first: str, second: str) -> None:
    # The first track's fetches always go before the second's: the Downloader serves
    # High-priority streams first, and Low-priority ones with what is left.
    track1 = kithara_io.open(first, priority="high")
    track2 = kithara_io.open(second, priority="low")
    with Player(track1) as player:  # the player closes both streams
        player.enqueue(track2)  # reads its header now; its bytes keep arriving meanwhile
        player.play()
        current = 0
        while not player.wait(0.5):
            status = player.status()
            if status.track != current:
                current = status.track
                print(f"now playing track {current + 1}, without a gap")
            got = sum(end - start for start, end in track2.buffered())
            print(f"track {status.track + 1} at {status.position:4.1f} s; "
                  f"track 2 preloaded {100 * got // track2.size}%")
    print(f"done: {player.status().state.value}, {player.status().underruns} underruns")


if __name__ == "__main__":
    with contextlib.ExitStack() as stack:
        urls = sys.argv[1:3] if len(sys.argv) >= 3 else stack.enter_context(local_music(2, bandwidth=64_000))
        main(*urls)
