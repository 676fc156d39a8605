"""HTTP source: ranged GETs with strict response validation (the ``Source`` of a URL).

Every answer is checked before a byte is stored: ``Content-Range`` must match the request,
the encodings must be identity, and the resource must still be the one first seen (ETag /
Last-Modified and total length are pinned on the first response, and every later request
carries ``If-Range``). Every request goes through the network layer (:mod:`kithara_io.net`:
one Client per source, its Policy built from the URL and options given here).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from typing import Callable, Deque, Dict, FrozenSet, Mapping, Optional, Tuple, Union

from ..errors import HTTPStatusError, InvalidResponseError, ResourceChangedError
from ..headers import content_range, unsatisfied_range
from ..net import Client, Policy
from ..retry import Timeout, status_error
from .answers import (
    answer_length,
    check_content_range,
    check_encodings,
    disposition_filename,
    is_html_page,
    may_be_a_slice,
)
from .base import Validators
from .transport import AbortHandle, Answer, HttpBody, connection_error

log = logging.getLogger(__name__)

_MAX_TOTAL = 1 << 62  # larger claimed lengths are refused: no real resource, and they overflow

Body = HttpBody  # the Body this source answers with

CertSpec = Union[None, str, Tuple[str, str]]
# sign(method, url, headers) -> the headers to send: an object store's request signer
# (sources/stores), called for every request (first, ranges, retries, revalidation).
Signer = Callable[[str, str, Dict[str, str]], Dict[str, str]]


class HttpSource:
    """Ranged GETs against one URL, over one requests Session and its connection pools."""

    def __init__(
        self,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Timeout = Timeout(),
        verify: Union[bool, str] = True,
        cert: CertSpec = None,
        max_redirects: int = 10,
        sign: Optional[Signer] = None,
    ) -> None:
        self.url = url
        self._sign = sign
        self.final_url = url
        self.filename: Optional[str] = None  # Content-Disposition's, from the first answer
        self._redirects_told: FrozenSet[str] = frozenset()
        # Credentials (headers, userinfo, netrc), proxies, cookies and TLS, per origin.
        self._policy = Policy(
            url, headers, timeout=timeout, verify=verify, cert=cert, max_redirects=max_redirects, netrc=sign is None
        )
        self._client = Client(self._policy, share=True)  # a second stream of the origin starts warm
        self._lock = threading.Lock()  # guards _pinned, _ranged, final_url, filename, _redirects_told, _ends
        self._pinned: Optional[Validators] = None
        self._ranged: Optional[bool] = None
        self._dates_in_if_range = True  # False once the server ignored a date there (Apache)
        self._ends: Deque[int] = collections.deque(maxlen=8)  # where the last ranges asked for ended

    # -- the Source protocol -------------------------------------------------------------
    @property
    def pinned(self) -> Optional[Validators]:
        return self._pinned

    @property
    def supports_ranges(self) -> Optional[bool]:
        return self._ranged

    offline = False  # only a local copy (DiskCachedSource) can be served unchecked

    def holds(self, pos: int) -> bool:
        return False  # every byte comes from the network

    def new_abort(self) -> AbortHandle:
        return AbortHandle()

    def pin(self, known: Validators, final_url: Optional[str] = None) -> None:
        """Pin a version known from elsewhere (a cached copy, confirmed by a 304 or served
        offline) unless one is pinned: later answers must match it, and carry If-Range.
        Range support is learnt from the next answer."""
        with self._lock:
            if self._pinned is None:
                self.final_url = final_url or self.final_url
                self._pinned = known  # last, as in _pin

    def abort_all(self) -> None:
        """Break every request in flight, also those still waiting for their answer."""
        self._client.abort_all()

    def _after_fork_in_child(self) -> None:
        """In a forked child: the parent's connections are forgotten (the network layer
        does that at the fork, without touching them); new locks."""
        self._lock = threading.Lock()
        self._policy.after_fork_in_child()

    def close(self) -> None:
        """Close every connection. Call only when no fetch is running."""
        self._client.close()

    def fetch(self, start: int, end: Optional[int], abort: Optional[AbortHandle] = None) -> HttpBody:
        """GET ``[start, end)`` (``end`` None: to the end). Raises a StreamError subclass."""
        body = self._get_range(start, end, abort, None)
        assert body is not None  # only a conditional request may go unanswered (304)
        return body

    def fetch_if_modified(
        self, start: int, end: Optional[int], known: Validators, abort: Optional[AbortHandle] = None
    ) -> Optional[HttpBody]:
        """Revalidate a cached copy: GET ``[start, end)`` with If-None-Match / If-Modified-Since
        from ``known``. None if the server answers 304 Not Modified (``known`` is then pinned
        as if it had answered); otherwise the answer, as :meth:`fetch` returns it."""
        return self._get_range(start, end, abort, known)

    def fetch_suffix(self, length: int, abort: Optional[AbortHandle] = None) -> Optional[HttpBody]:
        """GET the last ``length`` bytes (``Range: bytes=-N``), sent at open beside the head
        request so a container's tail read costs no extra round trip. None unless the answer
        is a 206 that matches: a server without (suffix) range support is left to the head
        request to discover, and nothing is pinned from such an answer."""
        abort = abort or AbortHandle()
        answer = self._request(f"bytes=-{length}", None, abort, if_range=self._if_range()[0])
        try:
            if answer.status != 206:
                answer.close()
                return None
            header = answer.headers.get("Content-Range", "")
            parsed = content_range(header)
            total = parsed[2] if parsed is not None else None
            if parsed is not None and total is not None:
                check_content_range(header, parsed[0], parsed[1], total, answer.url, None)
            if (
                parsed is None
                or total is None
                or total > _MAX_TOTAL
                or parsed[:2]
                != (
                    max(0, total - length),
                    total - 1,
                )
            ):
                raise InvalidResponseError(
                    f"Content-Range {header!r} does not match the requested last {length} bytes", url=answer.url
                )
            check_encodings(answer, (total - length, total))
            self._pin(answer, total, ranged=True)
            return HttpBody(answer.url, answer, max(0, total - length), total, total, True, abort)
        except BaseException:
            answer.close()
            raise

    # -- one request ---------------------------------------------------------------------
    def _get_range(
        self, start: int, end: Optional[int], abort: Optional[AbortHandle], known: Optional[Validators]
    ) -> Optional[HttpBody]:
        conditions = {}
        if known is not None and known.etag:
            conditions["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            conditions["If-Modified-Since"] = known.last_modified
        abort = abort or AbortHandle()
        spec = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        for attempt in range(2):
            if_range, dated = self._if_range()
            answer = self._request(spec, (start, end), abort, conditions, if_range)
            try:
                if known is not None and answer.status == 304:
                    answer.close()
                    self.pin(known, final_url=answer.url)
                    return None
                if (
                    answer.status == 416
                    and start == 0
                    and self._pinned is None
                    and "Content-Range" not in answer.headers
                ):
                    # An empty file on a server that says so without the length (RangeHTTPServer):
                    # ask without Range to learn it.
                    answer.close()
                    answer = self._request(None, (start, end), abort)
                elif answer.status == 200 and self._ranged and dated:
                    # If-Range carried a date: Apache judges one too fresh to be a strong
                    # validator for 60 s after the file's mtime, and answers the whole
                    # file. Unchanged (as _pin checks), it is asked again without If-Range:
                    # every answer's validators are still compared with the pinned ones.
                    self._pin(answer, answer_length(answer), ranged=True)
                    answer.close()
                    with self._lock:
                        self._dates_in_if_range = False
                    answer = self._request(spec, (start, end), abort, conditions, self._if_range()[0])
                elif answer.status == 200 and not self._ranged and may_be_a_slice(answer, start, end):
                    # Some servers (fsspec's test server, broken proxies) answer a range with
                    # 200 and just the bytes asked: such a body cannot be told from a whole
                    # file of that length. The answer to a request without Range can.
                    answer.close()
                    answer = self._request(None, (start, end), abort)
                return self._validate(answer, start, end, abort)
            except HTTPStatusError as exc:
                answer.close()
                # A signed redirect target that expired (403/410...): resolve the URL the
                # caller gave once more; the pinned validators still apply to the answer.
                if attempt == 0 and exc.status in _EXPIRED and self._forget_redirect(answer.url):
                    continue
                raise
            except BaseException:
                answer.close()
                raise
        raise AssertionError("unreachable")

    def _forget_redirect(self, failed_url: str) -> bool:
        """``failed_url`` was reached through a redirect: go back to the caller's URL (other
        fetches that failed there too share the one reset). False if it was not redirected."""
        if failed_url == self.url:
            return False
        with self._lock:
            if self.final_url == failed_url:
                self.final_url = self.url
        return True

    def _request(
        self,
        range_spec: Optional[str],
        span: Optional[tuple],
        abort: AbortHandle,
        conditions: Optional[Mapping[str, str]] = None,
        if_range: Optional[str] = None,
    ) -> Answer:
        """One GET; ``if_range``: the If-Range value of a range request (from ``_if_range``,
        which the caller also reads to judge the answer)."""
        headers = {"Accept-Encoding": "identity", **(conditions or {})}
        if range_spec is not None:
            headers["Range"] = range_spec
            if if_range:
                headers["If-Range"] = if_range
        with self._lock:
            url = self.final_url
        if self._sign is not None:
            headers = self._sign("GET", url, headers)
        if abort.aborted:
            raise connection_error(ConnectionAbortedError("request aborted"), url, span)
        elsewhere = self._elsewhere(span)
        random_read = range_spec is not None and not conditions and self._ranged is True and elsewhere
        response = self._client.request(
            "GET", url, headers, on_connect=abort.attach, span=span, random_read=random_read
        )
        if response.history:
            self._tell_redirect(url, response.url)
        return Answer.of(response)

    def _if_range(self) -> Tuple[Optional[str], bool]:
        """The pinned version's If-Range validator, and whether it is a date (sent only
        while the server honours dates there)."""
        pinned = self._pinned
        value = None if pinned is None else pinned.if_range
        if pinned is None or value is None:
            return None, False
        dated = value == pinned.last_modified  # (no strong ETag)
        if dated and not self._dates_in_if_range:
            return None, False
        return value, dated

    def _elsewhere(self, span: Optional[tuple]) -> bool:
        """Does this range start away from where the recent ones ended (a random read, not a
        reader streaming on, whose read-ahead may ask for the next range before the one
        before it went out)? Such a small range may go over libcurl (``Client.request(random_read=)``,
        cheapest per request); a stream's ranges keep http.client's connections, whose bodies
        land straight in the cache (and a process that only streams never loads libcurl)."""
        if span is None:
            return False  # the tail probe (a suffix, sent at open): a streaming reader sends it too
        start, end = span
        with self._lock:
            continues = any(0 <= start - e <= _NEAR for e in self._ends)
            if end is not None:
                self._ends.append(end)
        return not continues

    def _tell_redirect(self, url: str, target: str) -> None:
        """Log a redirect once per target (the command line's ``-v`` shows it)."""
        with self._lock:
            told, self._redirects_told = target in self._redirects_told, self._redirects_told | {target}
        if not told:
            log.info("%s redirected to %s", url, target)

    def _validate(self, answer: Answer, start: int, end: Optional[int], abort: AbortHandle) -> HttpBody:
        if answer.status == 206 and end is not None:
            usual = self._as_pinned(answer, start, end, abort)
            if usual is not None:
                return usual
        url = answer.url
        span = (start, end)
        status = answer.status
        if status in (200, 206):
            check_encodings(answer, span)
        if status == 206:
            body_start, body_end, total = self._parse_content_range(answer, start, end)
            self._pin(answer, total, ranged=True)
            return HttpBody(url, answer, body_start, body_end, total, True, abort)
        if status == 200:
            total = answer_length(answer)
            if total is not None and total > _MAX_TOTAL:
                raise InvalidResponseError(f"absurd Content-Length {total}", url=url, byte_range=span)
            if self._ranged:
                # We sent If-Range with the pinned validator: a 200 means it no longer
                # matches, unless something on the way ignored the Range header.
                self._pin(answer, total, ranged=True)  # raises if the validators moved
                raise InvalidResponseError(
                    "server answered a range request with the whole body (a proxy ignoring Range?)",
                    url=url,
                    byte_range=span,
                )
            if is_html_page(answer.headers, url):
                raise InvalidResponseError(
                    "server answered with an HTML page, not the file (an error page or captive portal?)",
                    url=url,
                    byte_range=span,
                )
            self._pin(answer, total, ranged=False)
            return HttpBody(url, answer, 0, total, total, False, abort)
        if status == 416:
            total = unsatisfied_range(answer.headers.get("Content-Range"))
            if total is not None and start >= total:
                self._pin(answer, total, ranged=True)
                answer.close()
                return HttpBody(url, None, start, start, total, True)
            raise InvalidResponseError("416 Range Not Satisfiable", url=url, byte_range=span)
        raise status_error(status, answer.reason, answer.headers, url, span)

    def _as_pinned(self, answer: Answer, start: int, end: int, abort: AbortHandle) -> Optional[HttpBody]:
        """The usual answer to a range request once the resource is pinned, told by comparing
        strings: exactly the bytes asked, of the pinned version, plain (what the checks below
        would accept and pin nothing new from). None for anything else: the checks decide."""
        pinned = self._pinned
        if pinned is None or pinned.size is None or self._ranged is not True or end > pinned.size:
            return None
        total = pinned.size
        headers = answer.headers
        if (
            headers.get("Content-Range") != f"bytes {start}-{end - 1}/{total}"
            or headers.get("Content-Length") != str(end - start)
            or headers.get("ETag") != pinned.etag
            or headers.get("Last-Modified") != pinned.last_modified
            or "Content-Encoding" in headers
            or "Transfer-Encoding" in headers
            or "icy-metaint" in headers
        ):
            return None
        return HttpBody(answer.url, answer, start, end, total, True, abort)

    def _parse_content_range(self, answer: Answer, start: int, end: Optional[int]) -> Tuple[int, int, Optional[int]]:
        url = answer.url
        header = answer.headers.get("Content-Range", "")
        parsed = content_range(header)
        if parsed is None:
            raise InvalidResponseError(
                f"206 with an unparseable Content-Range {header!r}", url=url, byte_range=(start, end)
            )
        first, last, total = parsed
        if max(last, total or 0) > _MAX_TOTAL:
            raise InvalidResponseError(f"absurd length in Content-Range {header!r}", url=url, byte_range=(start, end))
        check_content_range(header, first, last, total, url, (start, end))
        if end is None:
            expected_last = total - 1 if total is not None else None
        else:
            expected_last = (end if total is None else min(end, total)) - 1
        # A shorter answer that starts right is honest (CDNs cap slice sizes): the caller
        # stores what came and asks again for the rest. Anything else is refused.
        if first != start or last < first or (expected_last is not None and last > expected_last):
            raise InvalidResponseError(
                f"Content-Range {header!r} does not match the requested range", url=url, byte_range=(start, end)
            )
        length = answer_length(answer)
        if length is not None and length != last + 1 - first:
            raise InvalidResponseError(
                f"Content-Length {length} disagrees with Content-Range {header!r}", url=url, byte_range=(start, end)
            )
        return first, last + 1, total

    def _pin(self, answer: Answer, total: Optional[int], *, ranged: bool) -> None:
        seen = Validators(total, answer.headers.get("ETag"), answer.headers.get("Last-Modified"))
        with self._lock:
            pinned = self._pinned
            if pinned is None:
                self._ranged = ranged
                self.final_url = answer.url or self.final_url
                self.filename = disposition_filename(answer.headers.get("Content-Disposition"))
                # Last: another fetch's answer is taken as usual (``_as_pinned``, unlocked)
                # once it sees the pin, and open() may return then, with what is set above.
                self._pinned = seen
                return
            if self._ranged is None:  # pinned by a 304, which says nothing about ranges
                self._ranged = ranged
            changes = pinned.changes_from(seen)
            weak_to_strong = (
                pinned.etag and pinned.etag.startswith("W/") and seen.etag and not seen.etag.startswith("W/")
            )
            if weak_to_strong and not changes:
                # The same tag, strong now (Apache's, a second after the file changed):
                # If-Range can carry it from now on.
                self._pinned = dataclasses.replace(pinned, etag=seen.etag)
        if changes:
            raise ResourceChangedError("resource changed on the server: " + ", ".join(changes), url=answer.url)


_NEAR = 512 * 1024  # a range starting this far past a recent one's end continues a stream
_EXPIRED = (401, 403, 404, 410)  # what a signed URL answers once its signature is stale
__all__ = ["HttpSource", "HttpBody", "Body", "Validators", "AbortHandle"]
