"""What every object store shares: the signer hook's frame, and the optional dependency check.

A store's requests are those of :class:`~kithara_io.sources.http.HttpSource` to the object's
URL, each passed through a :class:`Signer` (HttpSource's ``sign`` hook) just before it is
sent: first requests, range requests, retries and revalidations alike.
"""

from __future__ import annotations

import importlib.util
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

from ..transport import origin


class Target(NamedTuple):
    """Where an object's requests go and how they are signed. ``ca_bundle``: the CA bundle
    the store's own tools are configured with (``AWS_CA_BUNDLE``), used where ``verify``
    is left True; ``moved``: a hint for a redirect."""

    url: str
    signer: "Signer"
    ca_bundle: Optional[str] = None
    moved: str = ""  # what a redirect (301, 307) most likely means for this store, in words


def need(module: str, extra: str, scheme: str) -> None:
    """Raise an ImportError naming the extra to install when ``module`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{scheme} URLs need {module}: pip install 'kithara-io[{extra}]'")


class Signer:
    """Called as ``sign(method, url, headers)`` for every request; returns the headers to
    send: the caller's own headers (given to the store, so that a signer can sign them),
    the request's, the pinned version as a precondition, and what the store signs.

    The pinned version goes as ``If-Match`` (a strong ETag) or ``If-Unmodified-Since`` in
    place of ``If-Range``: a replaced object is refused with 412 (never a byte of it), where
    If-Range would have it answered whole. A revalidation carries only ``If-None-Match``
    where there is an ETag: RFC 9110 has a server ignore ``If-Modified-Since`` beside it, but
    some (moto) answer 304 by the date alone, and an object replaced within the second of
    the cached one would be taken for it. Credentials go only to the object's own origin
    (``bind``); HttpSource follows no redirect of a store either."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)
        self._origin: Optional[Tuple[str, str, int]] = None

    def bind(self, url: str) -> None:
        """Sign requests to ``url``'s origin only."""
        self._origin = origin(url)

    def __call__(self, method: str, url: str, headers: Dict[str, str]) -> Dict[str, str]:
        out = {**self._headers, **headers}
        if "If-None-Match" in out:
            out.pop("If-Modified-Since", None)
        pinned = out.pop("If-Range", None)
        if pinned is not None:
            out["If-Match" if pinned.startswith('"') else "If-Unmodified-Since"] = pinned
        if self._origin is None or origin(url) != self._origin:
            return out
        return self.sign_store(method, url, out)

    def sign_store(self, method: str, url: str, headers: Dict[str, str]) -> Dict[str, str]:
        """``headers`` with the store's signature (the default: unsigned)."""
        return headers
