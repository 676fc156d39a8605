"""StoreSource: an HttpSource for one object of an object store, speaking in the user's URL.

Everything of HttpSource holds (validation, the pinned version, retries, abort handles); on
top: every request is signed (:class:`~.common.Signer`), no redirect is followed (a store
does not redirect a request to its own objects; credentials never reach another origin),
a 412 to the pinned version's precondition is a replaced object, and errors name the URL as
the user wrote it (``s3://bucket/key``), never the endpoint's signed request.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Tuple, Union

from ...errors import (
    HTTPStatusError,
    InvalidResponseError,
    ResourceChangedError,
    StreamError,
)
from ...net.redirects import TooManyRedirectsError
from ...retry import Timeout
from ..base import Validators
from ..http import AbortHandle, HttpBody, HttpSource
from .common import Signer


class StoreSource(HttpSource):
    """Ranged, signed GETs of one object. ``name``: the store URL (``s3://b/k``);
    ``url``: the endpoint URL the requests go to."""

    def __init__(
        self,
        name: str,
        url: str,
        signer: Signer,
        *,
        timeout: Optional[Timeout] = None,
        verify: Union[bool, str] = True,
        cert: Union[None, str, Tuple[str, str]] = None,
        moved: str = "",
    ) -> None:
        signer.bind(url)
        super().__init__(url, timeout=timeout or Timeout(), verify=verify, cert=cert, max_redirects=0, sign=signer)
        self.name = name
        self.moved = moved  # a hint for a redirect (S3: the bucket's region)
        # The disk cache's key: the endpoint URL without a query (an Azure SAS is a secret,
        # and the same object whatever the token)
        self.cache_key = url.split("?", 1)[0]

    def fetch(self, start: int, end: Optional[int], abort: Optional[AbortHandle] = None) -> HttpBody:
        with self._users_terms():
            return super().fetch(start, end, abort)

    def fetch_if_modified(
        self, start: int, end: Optional[int], known: Validators, abort: Optional[AbortHandle] = None
    ) -> Optional[HttpBody]:
        with self._users_terms():
            return super().fetch_if_modified(start, end, known, abort)

    def fetch_suffix(self, length: int, abort: Optional[AbortHandle] = None) -> Optional[HttpBody]:
        with self._users_terms():
            return super().fetch_suffix(length, abort)

    @contextmanager
    def _users_terms(self) -> Iterator[None]:
        try:
            yield
        except HTTPStatusError as exc:
            if exc.status == 412:  # the precondition of the pinned version failed
                raise ResourceChangedError(
                    "object replaced on the store: it no longer matches the version being read",
                    url=self.name,
                    byte_range=exc.byte_range,
                ) from exc
            if exc.status in (301, 307) and self.moved:
                raise HTTPStatusError(
                    exc.status, f"{exc.reason} ({self.moved})".lstrip(), url=self.name, byte_range=exc.byte_range
                ) from exc
            if exc.status in (401, 403):
                raise HTTPStatusError(  # not retried: nothing to wait for
                    exc.status,
                    f"{exc.reason} (the store refused the credentials, or they give no access to this object)".lstrip(),
                    url=self.name,
                    byte_range=exc.byte_range,
                ) from exc
            raise self._renamed(exc) from exc
        except InvalidResponseError as exc:
            if isinstance(exc, TooManyRedirectsError):
                hint = f"; {self.moved}" if self.moved else ""
                raise InvalidResponseError(
                    f"the store answered with a redirect, which is not followed (credentials stay with the store){hint}",
                    url=self.name,
                ) from exc
            raise self._renamed(exc) from exc
        except StreamError as exc:
            raise self._renamed(exc) from exc

    def _renamed(self, exc: StreamError) -> StreamError:
        """``exc`` naming the store URL (its text too: ``args`` is what repr shows)."""
        exc.url = self.name
        exc.args = (str(exc),)
        return exc
