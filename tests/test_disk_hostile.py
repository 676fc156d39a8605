"""The disk cache on a hostile disk and a shared machine (issue #18): a full disk never fails
the stream, files are private to the user, and a signed URL's signature is not stored."""

from __future__ import annotations

import errno
import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import kithara_io
from kithara_io.disk import DiskCache
from kithara_io.disk import entry as entry_module

DATA_SIZE = 4 << 20


@pytest.fixture
def data() -> bytes:
    return os.urandom(DATA_SIZE)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only): a disk that fills up for real."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the injected ENOSPC test covers the rest)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def read_through(url: str, cache: DiskCache) -> bytes:
    with kithara_io.open(url, cache=cache) as f:  # close() must not raise
        return f.read()


@pytest.mark.timeout(60)
def test_a_full_disk_stops_the_caching_not_the_stream(fault_server, data, small_tmpfs, caplog, no_leaks):
    url = fault_server.add("/a.bin", data)
    cache = DiskCache(small_tmpfs / "cache")
    caplog.set_level(logging.WARNING, logger="kithara_io")
    assert read_through(url, cache) == data
    warnings = [r for r in caplog.records if "stopped caching" in r.getMessage()]
    assert len(warnings) == 1 and "No space left" in warnings[0].getMessage()
    assert read_through(url, cache) == data  # again, with whatever the disk kept


@pytest.mark.timeout(60)
def test_an_injected_enospc_at_commit_stops_the_caching_not_the_stream(
    fault_server, data, tmp_path, monkeypatch, caplog, no_leaks
):
    url = fault_server.add("/a.bin", data)
    real_write_index = entry_module.write_index

    def full_disk(directory, index):
        if index.ranges:  # the first index (no bytes yet) fits; every commit does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_index(directory, index)

    monkeypatch.setattr(entry_module, "write_index", full_disk)
    caplog.set_level(logging.WARNING, logger="kithara_io")
    cache = DiskCache(tmp_path / "cache")
    assert read_through(url, cache) == data
    assert [r for r in caplog.records if "stopped caching" in r.getMessage()]
    monkeypatch.setattr(entry_module, "write_index", real_write_index)
    [info] = cache.entries()
    assert info.bytes_present == 0  # nothing claimed that is not on disk


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_cache_files_are_private_whatever_the_umask(fault_server, tmp_path, umask, no_leaks):
    url = fault_server.add("/a.bin", os.urandom(300_000))
    root = tmp_path / "cache"
    old = os.umask(umask)
    try:
        assert len(read_through(url, DiskCache(root))) == 300_000
    finally:
        os.umask(old)
    seen = 0
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{path}: {mode:o}"
        seen += 1
    assert seen >= 6  # root, entry directory, index, data, lock, inuse


def test_an_existing_cache_directory_is_left_alone(tmp_path, no_leaks):
    root = tmp_path / "shared"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    DiskCache(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755  # the user's choice, not ours


def test_the_index_stores_the_key_not_the_signature(fault_server, tmp_path, no_leaks):
    data = os.urandom(100_000)
    base = fault_server.add("/song.ogg", data)
    signed = base + "?Signature=s3cr3t-token&Expires=1"
    cache = DiskCache(tmp_path / "cache", key=lambda url: url.split("?")[0])
    assert read_through(signed, cache) == data
    [info] = cache.entries()
    raw = (info.path / "index.json").read_text()
    assert "s3cr3t" not in raw and base in raw
    assert (info.url, info.key, info.complete) == (base, base, True)
    assert read_through(base + "?Signature=other", cache) == data  # same entry, still served
