"""Object stores: ``s3://``, ``gs://`` (``gcs://``), ``az://`` (``abfs://``, ``abfss://``).

An object of a store is read over HTTP like any URL: :func:`open_source` maps the store URL
to the object's endpoint URL (:mod:`.s3`, :mod:`.gcs`, :mod:`.azure`) and gives the
:class:`~.source.StoreSource` a signer for its requests, so a store stream has everything
an http stream has (priorities, epoch cancel, the pinned version, disk cache, offline replay).

``storage_options`` are fsspec's names (s3fs, gcsfs, adlfs) for credentials and endpoints;
see each module. The signing libraries are optional: ``pip install 'kithara-io[s3]'``
(botocore), ``[gcs]`` (google-auth), ``[azure]``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple, Union

from ...retry import Timeout
from . import azure, gcs, s3
from .source import StoreSource

KINDS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
_MODULES = {"s3": s3, "gcs": gcs, "azure": azure}
OPTION_NAMES = frozenset(s3.OPTIONS + gcs.OPTIONS + azure.OPTIONS)

__all__ = ["KINDS", "OPTION_NAMES", "StoreSource", "is_store_url", "open_source"]


def is_store_url(name: str) -> bool:
    return name.split("://", 1)[0].lower() in KINDS and "://" in name


def split(name: str) -> Tuple[str, str, str, Optional[str]]:
    """``(kind, bucket, key, account)`` of a store URL; ValueError if it names no object."""
    scheme, rest = name.split("://", 1)
    kind = KINDS[scheme.lower()]
    bucket, _, key = rest.partition("/")  # a ? or # belongs to the key: object names may hold them
    account = None
    if kind == "azure" and "@" in bucket:  # abfs://container@ACCOUNT.dfs.core.windows.net/blob
        bucket, host = bucket.split("@", 1)
        account = host.split(".")[0]
    if not bucket or not key or key.endswith("/"):
        raise ValueError(f"{name!r} names no object (expected {scheme}://BUCKET/KEY)")
    return kind, bucket, key, account


def open_source(
    name: str,
    storage_options: Optional[Mapping[str, Any]] = None,
    *,
    headers: Optional[Mapping[str, str]] = None,
    timeout: Optional[Timeout] = None,
    verify: Union[bool, str] = True,
    cert: Union[None, str, Tuple[str, str]] = None,
) -> StoreSource:
    """The source of the object ``name`` names. Raises ValueError for a URL without an
    object or an option the store does not know, ImportError when its signing library is
    missing (naming the extra to install)."""
    kind, bucket, key, account = split(name)
    options = dict(storage_options or {})
    module = _MODULES[kind]
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown storage option(s) {unknown} for {name.split(':', 1)[0]}://; valid: {list(module.OPTIONS)}"
        )
    headers = dict(headers or {})
    if kind == "azure":
        found = azure.target(bucket, key, options, headers, account)
    else:
        found = module.target(bucket, key, options, headers)
    if verify is True and found.ca_bundle:
        verify = found.ca_bundle
    return StoreSource(name, found.url, found.signer, timeout=timeout, verify=verify, cert=cert, moved=found.moved)
