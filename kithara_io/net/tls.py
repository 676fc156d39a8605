"""TLS for every connection: one ``SSLContext`` per CA bundle and client certificate.

Loading a CA bundle costs 0.2 s of CPU for the system one; it is loaded once into a context
that every connection of every source shares (a changed file is loaded again). ``verify``
True takes the bundle from the environment as requests and OpenSSL do
(``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, then ``SSL_CERT_FILE``), else certifi's (through requests).
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
from typing import Optional, Tuple, Union

import requests.certs

Verify = Union[bool, str]
CertSpec = Union[None, str, Tuple[str, str]]

_ENVIRONMENT = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


def resolve_verify(verify: Verify) -> Verify:
    """``verify`` as given; True takes a CA bundle path from the environment, if one is set."""
    if verify is True:
        for name in _ENVIRONMENT:
            if os.environ.get(name):
                return os.environ[name]
    return verify


def ca_bundle(verify: Verify) -> Optional[str]:
    """The CA bundle (a file or a directory) that ``verify`` (already resolved) trusts; None
    when verification is off."""
    return None if verify is False else (verify if isinstance(verify, str) else requests.certs.where())


def cert_files(cert: CertSpec) -> Tuple[Optional[str], Optional[str]]:
    """(certificate, key) files of a client certificate setting."""
    return (cert if isinstance(cert, tuple) else (cert, None)) if cert else (None, None)


def context_for(verify: Verify, cert: CertSpec) -> ssl.SSLContext:
    """The shared context for these settings (``verify`` already resolved). Raises OSError
    or ``ssl.SSLError`` for a bundle or certificate that cannot be loaded."""
    ca = ca_bundle(verify)
    cert_file, key_file = cert_files(cert)
    stamps = tuple(_stamp(p) for p in (ca, cert_file, key_file))
    with _LOCK:  # parallel first requests of a stream would load it twice at once
        return _load(ca, cert_file, key_file, stamps)


def _stamp(path: Optional[str]) -> Optional[tuple]:
    if path is None:
        return None
    st = os.stat(path)  # a missing file is the caller's error, raised here
    return st.st_mtime_ns, st.st_size


_LOCK = threading.Lock()  # guards _load's cache fill; held while loading


def _fresh_lock() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # a parent thread may have held it at the fork


os.register_at_fork(after_in_child=_fresh_lock)


@functools.lru_cache(maxsize=16)
def _load(ca: Optional[str], cert_file: Optional[str], key_file: Optional[str], stamps: tuple) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname checked, certificate required
    if ca is None:  # verify=False
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif os.path.isdir(ca):
        context.load_verify_locations(capath=ca)
    else:
        context.load_verify_locations(cafile=ca)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


__all__ = ["CertSpec", "Verify", "ca_bundle", "cert_files", "context_for", "resolve_verify"]
