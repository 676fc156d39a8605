"""A task Dask worker processes run in tests/test_stores_fs.py: ``kithara::s3://`` in a
process without s3fs needs ``kithara_io.fs`` imported first (see kithara_io.fs_stores)."""

from __future__ import annotations

from typing import Dict


def store_clip_stats(source: str, storage_options: Dict[str, object]) -> Dict[str, object]:
    import kithara_io.fs  # noqa: F401 - names s3:// for fsspec's chained URLs
    from tests.dask_tasks import clip_stats

    return clip_stats(source, storage_options)
