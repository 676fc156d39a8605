"""A crossfaded playlist of whatever the files are (FLAC, M4A, Opus...): each track fades out
over 3 s while the next fades in (equal power), resampled to the device's rate if needed. The
next track preloads at Low priority and goes to High when its fade begins.

    python examples/crossfade.py [URL1 URL2 ...]   (no URLs: generated tracks served locally)
"""

import contextlib
import sys

from _support import local_music
from kithara_io.playback import Player
from kithara_io.cli.progress import audio_format, format_time


def main(urls) -> None:
    with Player(urls[0], crossfade=3.0) as player:
        for url in urls[1:]:
            player.enqueue(url)  # opened now, at Low priority
        player.play()
        while not player.wait(1.0):
            s = player.status()
            print(f"track {s.track + 1}/{len(urls)} {format_time(s.position)} / {format_time(s.duration)}"
                  f"  {audio_format(s.codec, s.samplerate, s.output_samplerate)}")
    print(f"done: {player.status().state.value}, {player.status().underruns} underruns")


if __name__ == "__main__":
    with contextlib.ExitStack() as stack:
        urls = sys.argv[1:] or stack.enter_context(local_music(3))
        main(urls)
