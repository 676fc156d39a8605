"""Decode a kithara_io stream with PyAV (FFmpeg): any format FFmpeg reads, over HTTP.

    python examples/pyav_decode.py [URL]   (no URL: a generated track served locally)
"""

import contextlib
import sys

import av

import kithara_io
from _support import local_music


def main(url: str) -> None:
    with kithara_io.open(url) as f, av.open(f) as container:  # PyAV takes any binary file
        stream = container.streams.audio[0]
        print(f"{url}: {stream.codec_context.name}, {stream.rate} Hz, {stream.channels} ch")
        samples, sample_format = 0, None
        for frame in container.decode(stream):
            samples += frame.samples
            sample_format = frame.format.name  # frame.to_ndarray() gives numpy samples
        print(f"decoded {samples} samples ({samples / stream.rate:.2f} s) as {sample_format}")
        container.seek(0)  # seeking works too: FFmpeg seeks the stream, kithara_io fetches
        print(f"first frame again: pts {next(container.decode(stream)).pts}")
        print(f.stats())


if __name__ == "__main__":
    with contextlib.ExitStack() as stack:
        urls = sys.argv[1:] or stack.enter_context(local_music())
        main(urls[0])
