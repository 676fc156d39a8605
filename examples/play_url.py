"""Play a URL through the sound card, with a one-line status.

    python examples/play_url.py [URL]      (no URL: a generated track served locally)
"""

import contextlib
import sys

from _support import local_music
from kithara_io.playback import Player, PlaybackError
from kithara_io.cli.progress import format_time


def main(url: str) -> int:
    try:
        player = Player(url)  # opens the URL and reads the header; plays nothing yet
    except (OSError, PlaybackError) as exc:
        print(f"cannot play {url}: {exc}", file=sys.stderr)
        return 2
    with player:
        try:
            player.play()
        except PlaybackError as exc:  # e.g. no output device: see docs/guides/playing.md
            print(exc, file=sys.stderr)
            return 1
        while not player.wait(1.0):  # until the end; Ctrl-C closes the player cleanly
            s = player.status()
            print(f"{s.state.value} {format_time(s.position)} / {format_time(s.duration)}"
                  f"  buffered {s.buffered:.1f} s  underruns {s.underruns}")
    print(f"{player.status().state.value}, {player.status().underruns} underruns")
    return 0


if __name__ == "__main__":
    with contextlib.ExitStack() as stack:
        urls = sys.argv[1:] or stack.enter_context(local_music())
        sys.exit(main(urls[0]))
