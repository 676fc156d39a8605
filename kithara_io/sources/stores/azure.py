"""``az://container/blob`` and ``abfs://container/blob``: the blob's URL and its signer.

Credentials, as adlfs takes them (options, else the ``AZURE_STORAGE_*`` variables of the
Azure CLI): ``connection_string`` (its ``AccountName``/``AccountKey``/``BlobEndpoint``/
``SharedAccessSignature``, or ``UseDevelopmentStorage=true`` for Azurite), ``account_name``
with ``account_key`` (Shared Key) or ``sas_token``, ``credential`` (an account key or SAS
string, an ``AzureNamedKeyCredential``/``AzureSasCredential``, or a token credential such as
azure-identity's ``DefaultAzureCredential``); ``anon=True`` or none of them: anonymous
(public containers). ``endpoint_url`` names the account's blob endpoint
(``http://127.0.0.1:10000/devstoreaccount1``); else ``https://ACCOUNT.blob.core.windows.net``.

Shared Key is signed here, per Microsoft's documented algorithm ("Authorize with Shared
Key", version 2009-09-19 and later): azure-storage-blob has the same signer, but only as a
private module (``azure.storage.blob._shared``), and azure-core has none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from email.utils import formatdate
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .common import Signer, Target

OPTIONS = ("account_name", "account_key", "sas_token", "connection_string", "credential", "endpoint_url", "anon")

VERSION = "2021-08-06"  # x-ms-version: what the requests mean (ranges, conditions, ETags)
# Azurite's well-known development account (public, documented by Microsoft)
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_DEV_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


def target(
    container: str, blob: str, options: Mapping[str, Any], headers: Mapping[str, str], account: Optional[str] = None
) -> Target:
    """``account``: named by the URL (``abfs://container@ACCOUNT.dfs.core.windows.net/blob``)."""
    env = os.environ
    settings: Dict[str, str] = {}
    connection = options.get("connection_string") or env.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection:
        settings = _parse_connection_string(connection)
    name = (
        options.get("account_name") or settings.get("AccountName") or account or env.get("AZURE_STORAGE_ACCOUNT_NAME")
    )
    key = options.get("account_key") or settings.get("AccountKey") or env.get("AZURE_STORAGE_ACCOUNT_KEY")
    sas = options.get("sas_token") or settings.get("SharedAccessSignature") or env.get("AZURE_STORAGE_SAS_TOKEN")
    endpoint = options.get("endpoint_url") or settings.get("BlobEndpoint")
    if not endpoint:
        if not name:
            raise ValueError(
                "az:// URL without an account: give account_name, a connection string or AZURE_STORAGE_ACCOUNT_NAME"
            )
        suffix = settings.get("EndpointSuffix", "core.windows.net")
        endpoint = f"{settings.get('DefaultEndpointsProtocol', 'https')}://{name}.blob.{suffix}"
    if not name:  # from the endpoint: ACCOUNT.blob.core.windows.net, or path-style (Azurite)
        parts = urlsplit(endpoint)
        name = parts.path.strip("/").split("/")[0] or (parts.hostname or "").split(".")[0]
    url = f"{endpoint.rstrip('/')}/{container}/{quote(blob, safe='/')}"
    credential = options.get("credential")
    if credential is not None:
        key, sas = _from_credential(credential, key, sas)
        if hasattr(credential, "get_token"):
            return Target(url, TokenSigner(credential, headers))
    if options.get("anon"):
        return Target(url, VersionSigner(headers))
    if sas:
        return Target(f"{url}?{sas.lstrip('?')}", VersionSigner(headers))
    if key:
        return Target(url, SharedKeySigner(name, key, headers))
    return Target(url, VersionSigner(headers))


def _parse_connection_string(text: str) -> Dict[str, str]:
    settings = {}
    for part in text.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            settings[k.strip()] = v.strip()
    if settings.get("UseDevelopmentStorage", "").lower() == "true":
        settings = {"AccountName": _DEV_ACCOUNT, "AccountKey": _DEV_KEY, "BlobEndpoint": _DEV_ENDPOINT, **settings}
    return settings


def _from_credential(credential: Any, key: Optional[str], sas: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    if isinstance(credential, str):  # a SAS starts with a query field; an account key is base64
        return (None, credential) if "sig=" in credential else (credential, None)
    named = getattr(credential, "named_key", None)  # azure.core.credentials.AzureNamedKeyCredential
    if named is not None:
        return named.key, None
    signature = getattr(credential, "signature", None)  # azure.core.credentials.AzureSasCredential
    if signature is not None:
        return None, signature
    return key, sas


class VersionSigner(Signer):
    """Anonymous or SAS (in the URL): only the API version is added."""

    def sign_store(self, method: str, url: str, headers: Dict[str, str]) -> Dict[str, str]:
        headers["x-ms-version"] = VERSION
        return headers


class SharedKeySigner(Signer):
    """``Authorization: SharedKey account:signature`` (HMAC-SHA256 of the string to sign)."""

    def __init__(self, account: str, key: str, headers: Mapping[str, str]) -> None:
        super().__init__(headers)
        self._account = account
        self._key = base64.b64decode(key)

    def sign_store(self, method: str, url: str, headers: Dict[str, str]) -> Dict[str, str]:
        headers["x-ms-date"] = formatdate(usegmt=True)
        headers["x-ms-version"] = VERSION
        lower = {k.lower(): v for k, v in headers.items()}
        standard = [
            "content-encoding",
            "content-language",
            "content-length",
            "content-md5",
            "content-type",
            "date",
            "if-modified-since",
            "if-match",
            "if-none-match",
            "if-unmodified-since",
            "range",
        ]
        values = [lower.get(h, "") for h in standard]
        if values[2] == "0":
            values[2] = ""
        canonical_headers = "".join(f"{k}:{lower[k].strip()}\n" for k in sorted(lower) if k.startswith("x-ms-"))
        parts = urlsplit(url)
        resource = f"/{self._account}{parts.path or '/'}"
        query: Dict[str, list] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(k.lower(), []).append(unquote(v))
        resource += "".join(f"\n{k}:{','.join(sorted(v))}" for k, v in sorted(query.items()))
        text = "\n".join([method, *values]) + "\n" + canonical_headers + resource
        digest = hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).digest()
        headers["Authorization"] = f"SharedKey {self._account}:{base64.b64encode(digest).decode()}"
        return headers


class TokenSigner(Signer):
    """``Authorization: Bearer`` from an Azure token credential (``get_token``), renewed
    five minutes before it expires."""

    _SCOPE = "https://storage.azure.com/.default"

    def __init__(self, credential: Any, headers: Mapping[str, str]) -> None:
        super().__init__(headers)
        self._credential = credential
        self._token: Any = None
        self._lock = threading.Lock()

    def sign_store(self, method: str, url: str, headers: Dict[str, str]) -> Dict[str, str]:
        import time

        with self._lock:
            if self._token is None or self._token.expires_on - 300 < time.time():
                self._token = self._credential.get_token(self._SCOPE)
            token = self._token.token
        headers["Authorization"] = f"Bearer {token}"
        headers["x-ms-version"] = VERSION
        return headers
