"""``gs://bucket/object``: the XML API URL of the object and a google-auth signer.

Credentials (gcsfs's ``token`` option): ``"anon"`` (public objects, the emulator), a path to
a service account or user credentials JSON file, a ``google.auth.credentials.Credentials``,
else ``google.auth.default()`` (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's application
default credentials, the metadata server). ``STORAGE_EMULATOR_HOST`` (the emulators'
variable, as google-cloud-storage reads it) is the endpoint, anonymous; ``endpoint_url``
names another. The XML API (``/bucket/object``) answers ranges with the object's ETag.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Mapping
from urllib.parse import quote

from .common import Signer, Target, need

OPTIONS = ("token", "project", "endpoint_url", "anon")

_SCOPES = ["https://www.googleapis.com/auth/devstorage.read_only"]
_DEFAULT = "https://storage.googleapis.com"


def target(bucket: str, name: str, options: Mapping[str, Any], headers: Mapping[str, str]) -> Target:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    endpoint = options.get("endpoint_url") or emulator or _DEFAULT
    if "://" not in endpoint:  # the emulator variable is often host:port
        endpoint = "http://" + endpoint
    url = f"{endpoint.rstrip('/')}/{bucket}/{quote(name, safe='/')}"
    token = options.get("token")
    anonymous = (
        options.get("anon") or token == "anon" or (emulator and not options.get("endpoint_url") and token is None)
    )
    if anonymous:
        return Target(url, Signer(headers))
    need("google.auth", "gcs", "gs://")
    return Target(url, BearerSigner(_credentials(token, options.get("project")), headers))


def _credentials(token: Any, project: Any) -> Any:
    import google.auth

    if token is None or token == "google_default":
        credentials, _ = google.auth.default(scopes=_SCOPES, quota_project_id=project)
        return credentials
    if isinstance(token, (str, os.PathLike)):
        credentials, _ = google.auth.load_credentials_from_file(
            os.fspath(token), scopes=_SCOPES, quota_project_id=project
        )
        return credentials
    return token  # a Credentials object


class BearerSigner(Signer):
    """``Authorization: Bearer`` from google-auth credentials, refreshed when they expire
    (``Credentials.before_request``, serialised: a refresh is one request, not one per thread)."""

    def __init__(self, credentials: Any, headers: Mapping[str, str]) -> None:
        super().__init__(headers)
        from google.auth.transport.requests import Request

        self._credentials = credentials
        self._refresh = Request()
        self._lock = threading.Lock()

    def sign_store(self, method: str, url: str, headers: Dict[str, str]) -> Dict[str, str]:
        with self._lock:
            self._credentials.before_request(self._refresh, method, url, headers)
        return headers
