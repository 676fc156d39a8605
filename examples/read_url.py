"""Read a URL with soundfile, as if it were a local file.

    python examples/read_url.py [URL]      (no URL: a generated track served locally)
"""

import contextlib
import sys

import soundfile as sf

import kithara_io
from _support import local_music


def main(url: str) -> None:
    with kithara_io.open(url) as f:
        data, rate = sf.read(f)  # the whole file, decoded
        print(f"{url}: {data.shape[0]} frames x {data.shape[1]} ch at {rate} Hz")
        f.seek(0)
        with sf.SoundFile(f) as snd:  # or jump around: only the bytes near 1 s are needed
            snd.seek(rate)
            block = snd.read(1024)
            print(f"1024 frames from 0:01, peak {abs(block).max():.3f}")
        print(f.stats())


if __name__ == "__main__":
    with contextlib.ExitStack() as stack:
        urls = sys.argv[1:] or stack.enter_context(local_music())
        main(urls[0])
