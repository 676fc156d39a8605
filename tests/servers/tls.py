"""Certificates made in the session (trustme): a private CA and a leaf for loopback."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import trustme

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: ``ca`` (what a client trusts), ``cert`` + ``key`` (what the server shows)."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls_files(directory: Path, names: Sequence[str] = LOOPBACK_NAMES) -> TlsFiles:
    """A new CA and a leaf certificate for ``names``, written into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*names)
    files = TlsFiles(directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key")
    ca.cert_pem.write_to_path(str(files.ca))
    leaf.private_key_pem.write_to_path(str(files.key))
    with open(files.cert, "wb") as out:  # the leaf first, then its chain
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    return files
