"""Certificates made in the session (trustme): a private CA and a leaf for loopback."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import trustme

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: ``ca`` (what a client trusts), ``cert`` + ``key`` (what the server shows),
    ``client_cert`` + ``client_key`` (a client certificate issued by the same CA)."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Optional[Path] = None
    client_key: Optional[Path] = None

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        """The server side; ``require_client_cert``: refuse clients without a certificate
        issued by ``ca``."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(self.ca))
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls_files(directory: Path, names: Sequence[str] = LOOPBACK_NAMES) -> TlsFiles:
    """A new CA and a leaf certificate for ``names``, written into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*names)
    client = ca.issue_cert("client@kithara.test")  # trustme leaves allow client auth too
    files = TlsFiles(
        directory / "ca.pem",
        directory / "leaf.pem",
        directory / "leaf.key",
        directory / "client.pem",
        directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    for issued, cert, key in ((leaf, files.cert, files.key), (client, files.client_cert, files.client_key)):
        issued.private_key_pem.write_to_path(str(key))
        with open(cert, "wb") as out:  # the leaf first, then its chain
            for blob in issued.cert_chain_pems:
                out.write(blob.bytes())
    return files
