"""Credentials on every request, and only where they belong (issue #13 item 6, issue #18).

Auth of every kind — an ``Authorization`` header, URL userinfo, netrc, proxy credentials —
must hold for every range request of a stream, not only the first one that goes through
requests. And credentials never leave the origin they were given for: host A (127.0.0.1)
redirecting to host B (a second fault server bound to 127.0.0.2) must not hand B the token.
The fault servers' request logs are the ground truth; files are read to their end with many
small range requests, so the later requests (the pooled route) are checked too.
"""

from __future__ import annotations

import base64
import functools
import itertools
import time
from pathlib import Path
from typing import List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kithara_io
from kithara_io import HTTPStatusError, Retry, Timeout
from tests.servers.faults import FaultServer, Redirect, Status

pytestmark = pytest.mark.timeout(30)

KiB = 1024
MiB = 1024 * KiB
FAST = dict(retry=Retry(attempts=3, backoff=0.01, max_backoff=0.05), timeout=Timeout(connect=2, read=2))
# One 64 KiB request at a time: a 1 MiB file is 16 range requests after the first.
SMALL = dict(FAST, tail=0, max_outstanding=1, first_fetch=64 * KiB, min_fetch=64 * KiB, max_fetch=64 * KiB, read_ahead=64 * KiB, cache_budget=None)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@functools.lru_cache(maxsize=None)
def _bytes(path: str, size: int) -> bytes:
    return Path(path).read_bytes()[:size]


@pytest.fixture
def data(media) -> bytes:
    """1 MiB of random.bin."""
    return _bytes(str(media["random.bin"]), 1 * MiB)


def write_netrc(path: Path, host: str, user: str, password: str) -> Path:
    path.write_text(f"machine {host}\n  login {user}\n  password {password}\n")
    path.chmod(0o600)
    return path


def read_all(f, step: int = 64 * KiB) -> bytes:
    out = bytearray()
    for _ in range(1 << 16):
        piece = f.read(step)
        if not piece:
            return bytes(out)
        out += piece
    raise AssertionError("read did not end")


def with_userinfo(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def gets(srv: FaultServer, path: Optional[str] = None):
    return [r for r in srv.requests if r.method == "GET" and (path is None or r.path == path)]


# -- every request carries the credentials ------------------------------------------------------


def test_url_userinfo_holds_for_every_range_request(no_leaks, make_fault_server, clean_env, data):
    srv = make_fault_server(auth=basic("user", "pass"))
    srv.add("/f", data)
    with kithara_io.open(with_userinfo(srv.url("/f"), "user", "pass"), **SMALL) as f:
        assert read_all(f) == data
    recs = gets(srv, "/f")
    assert len(recs) >= 16
    assert [r.status for r in recs] == [206] * len(recs)  # never a 401
    assert all(r.headers.get("Authorization") == basic("user", "pass") for r in recs)


def test_wrong_url_userinfo_is_a_401_at_open(no_leaks, make_fault_server, clean_env, data):
    srv = make_fault_server(auth=basic("user", "pass"))
    srv.add("/f", data)
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(with_userinfo(srv.url("/f"), "user", "wrong"), **SMALL)
    assert info.value.status == 401


def test_authorization_header_holds_for_every_range_request(no_leaks, make_fault_server, clean_env, data):
    srv = make_fault_server(auth="Bearer x")
    srv.add("/f", data)
    with kithara_io.open(srv.url("/f"), headers={"Authorization": "Bearer x"}, **SMALL) as f:
        assert read_all(f) == data
    recs = gets(srv, "/f")
    assert len(recs) >= 16 and all(r.status == 206 and r.headers.get("Authorization") == "Bearer x" for r in recs)


def test_netrc_holds_for_every_range_request(no_leaks, make_fault_server, clean_env, tmp_path, data):
    srv = make_fault_server(auth=basic("netuser", "netpass"))
    srv.add("/f", data)
    clean_env.setenv("NETRC", str(write_netrc(tmp_path / "netrc", "127.0.0.1", "netuser", "netpass")))
    with kithara_io.open(srv.url("/f"), **SMALL) as f:
        assert read_all(f) == data
    recs = gets(srv, "/f")
    assert len(recs) >= 16 and all(r.status == 206 and r.headers.get("Authorization") == basic("netuser", "netpass") for r in recs)


# -- environment proxies --------------------------------------------------------------------------


def test_http_proxy_from_the_environment_with_credentials(no_leaks, make_proxy, make_fault_server, clean_env, data):
    proxy = make_proxy(auth=basic("pu", "pp"))
    origin = make_fault_server()
    origin.add("/f", data)
    for name in ("http_proxy", "HTTP_PROXY"):
        clean_env.setenv(name, proxy.proxy_url("pu", "pp"))
    with kithara_io.open(origin.url("/f"), **SMALL) as f:
        assert read_all(f) == data
    seen = proxy.requests
    assert len(seen) >= 16
    assert all(r.method == "GET" and r.target == origin.url("/f") for r in seen)  # absolute-URI form
    assert all(r.proxy_authorization == basic("pu", "pp") for r in seen)
    assert len(gets(origin, "/f")) == len(seen)  # every request went through the proxy
    assert all(r.headers.get("Proxy-Authorization") is None for r in origin.requests)  # not forwarded


def test_https_through_a_connect_tunnel_with_proxy_credentials(
    no_leaks, make_proxy, make_fault_server, tls_files, clean_env, data
):
    proxy = make_proxy(auth=basic("pu", "pp"))
    origin = make_fault_server(tls=tls_files)
    origin.add("/f", data)
    for name in ("https_proxy", "HTTPS_PROXY"):
        clean_env.setenv(name, proxy.proxy_url("pu", "pp"))
    with kithara_io.open(origin.url("/f"), verify=str(tls_files.ca), **SMALL) as f:
        assert read_all(f) == data
    tunnels = proxy.requests
    assert tunnels and all(r.method == "CONNECT" and r.target == f"127.0.0.1:{origin.port}" for r in tunnels)
    assert all(r.proxy_authorization == basic("pu", "pp") for r in tunnels)
    assert len(gets(origin, "/f")) >= 16
    # Every connection the origin saw came through a tunnel, and the tunnels were reused.
    assert origin.connections == len(tunnels) <= 3


def test_proxy_without_credentials_is_refused_with_407(no_leaks, make_proxy, make_fault_server, clean_env, data):
    proxy = make_proxy(auth=basic("pu", "pp"))
    origin = make_fault_server()
    origin.add("/f", data)
    clean_env.setenv("http_proxy", proxy.url)
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(origin.url("/f"), **SMALL)
    assert info.value.status == 407
    assert origin.count() == 0


def test_proxy_refusing_the_tunnel_is_a_407_at_once(no_leaks, make_proxy, make_fault_server, tls_files, clean_env):
    """Not retried as a connection failure (it was: 5 attempts, 3.4 s, and urllib3's wrapper
    text as the message): the proxy's status, like a 407 over plain http."""
    proxy = make_proxy(auth=basic("pu", "pp"))
    origin = make_fault_server(tls=tls_files)
    url = origin.add("/f", b"x" * 1000)
    clean_env.setenv("https_proxy", proxy.proxy_url("pu", "wrong"))
    started = time.monotonic()
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(url, verify=str(tls_files.ca), retry=Retry(attempts=5, backoff=0.2), tail=0)
    assert time.monotonic() - started < 1.0
    assert info.value.status == 407 and "proxy" in str(info.value) and url in str(info.value)
    assert "Pool" not in str(info.value) and "wrong" not in str(info.value)
    assert [r.method for r in proxy.requests] == ["CONNECT"]
    assert origin.connections == 0


@pytest.mark.parametrize("variable", ["no_proxy", "NO_PROXY"])
def test_no_proxy_is_respected(no_leaks, make_proxy, make_fault_server, clean_env, data, variable):
    proxy = make_proxy()
    origin = make_fault_server()
    origin.add("/f", data)
    clean_env.setenv("http_proxy", proxy.url)
    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv(variable, "localhost,127.0.0.1")
    with kithara_io.open(origin.url("/f"), **SMALL) as f:
        assert read_all(f) == data
    assert proxy.requests == []
    assert len(gets(origin, "/f")) >= 16


# -- credentials stay home (issue #18) --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["header", "userinfo", "netrc"])
@pytest.mark.parametrize("when", ["at-open", "mid-stream", "b-moves-later"])
def test_credentials_never_follow_a_redirect_to_another_host(
    no_leaks, make_fault_server, clean_env, tmp_path, data, kind, when
):
    a = make_fault_server(host="127.0.0.1")
    b = make_fault_server(host="127.0.0.2")
    b.add("/f", data)
    a.add("/f", data, etag=b.etag("/f"), last_modified=b.last_modified("/f"))  # an identical mirror
    if when == "mid-stream":
        a.script("/f", [None])  # A answers the first request itself, then sends the rest to B
    a.always("/f", Redirect(b.url("/f"), 302))
    if when == "b-moves-later":
        # A sends the stream to B at open; later B moves the file (on B): following that
        # redirect starts again from B's URL, which the credentials were never given for.
        b.add("/g", data, etag=b.etag("/f"), last_modified=b.last_modified("/f"))
        b.script("/f", [None, None])
        b.always("/f", Redirect("/g", 307))
    url, headers = a.url("/f"), {}
    if kind == "header":
        headers = {"Authorization": "Bearer secret-token"}
    elif kind == "userinfo":
        url = with_userinfo(url, "user", "pass")
    else:
        clean_env.setenv("NETRC", str(write_netrc(tmp_path / "netrc", "127.0.0.1", "netuser", "netpass")))
    options = dict(SMALL, max_outstanding=2, min_fetch=32 * KiB, max_fetch=32 * KiB)
    with kithara_io.open(url, headers=headers, **options) as f:
        assert read_all(f) == data
    at_a, at_b = gets(a, "/f"), gets(b)
    assert at_a[0].headers.get("Authorization") is not None  # the credentials were sent to A
    assert len(at_b) >= 16
    leaked = [(r.range, r.headers.get("Authorization")) for r in at_b if r.headers.get("Authorization")]
    assert leaked == []


ORIGINS = [("127.0.0.1", 0), ("127.0.0.1", 1), ("127.0.0.2", 0), ("127.0.0.2", 1), ("127.0.0.3", 0), ("127.0.0.3", 1)]
_example_ids = itertools.count(1)


@pytest.fixture
def origins(make_fault_server) -> List[FaultServer]:
    """Six origins: two ports on each of 127.0.0.1, 127.0.0.2 and 127.0.0.3."""
    return [make_fault_server(host=host) for host, _ in ORIGINS]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chain=st.lists(st.integers(0, len(ORIGINS) - 1), min_size=1, max_size=4),
    kind=st.sampled_from(["header", "userinfo", "netrc"]),
    code=st.sampled_from([301, 302, 303, 307, 308]),
)
@pytest.mark.timeout(60)
def test_credentials_reach_only_their_origin_over_any_redirect_chain(
    no_leaks, origins, clean_env, tmp_path, media, chain, kind, code
):
    """A redirect chain across hosts and ports, starting at ``origins[chain[0]]`` (where the
    credentials are given) and ending where the file is: on every request of the stream, a
    credential is seen only by the origin it was given for (for netrc: its host, as netrc
    names hosts, not ports)."""
    data = _bytes(str(media["random.bin"]), 256 * KiB)
    n = next(_example_ids)
    paths = [f"/e{n}/hop{i}" for i in range(len(chain))]
    for i, index in enumerate(chain[:-1]):
        origins[index].always(paths[i], Redirect(origins[chain[i + 1]].url(paths[i + 1]), code))
    origins[chain[-1]].add(paths[-1], data)
    home = origins[chain[0]]
    url, headers = home.url(paths[0]), {}
    netrc = tmp_path / "empty.netrc"
    if kind == "header":
        headers = {"Authorization": "Bearer secret-token"}
    elif kind == "userinfo":
        url = with_userinfo(url, "user", "pass")
    else:
        netrc = write_netrc(tmp_path / f"netrc-{n}", home.host, "netuser", "netpass")
    clean_env.setenv("NETRC", str(netrc))
    with kithara_io.open(url, headers=headers, **dict(SMALL, max_outstanding=2, min_fetch=32 * KiB, max_fetch=32 * KiB)) as f:
        assert read_all(f) == data
    first = [r for r in home.requests if r.path == paths[0]][0]
    assert first.headers.get("Authorization") is not None  # given at home
    for srv in origins:
        allowed = srv.host == home.host if kind == "netrc" else srv is home
        carried = [r.path for r in srv.requests if r.path in paths and r.headers.get("Authorization")]
        assert allowed or carried == [], (srv.base_url, home.base_url, carried)


@pytest.mark.parametrize("where", ["open", "later"])
def test_url_password_never_appears_in_an_error(no_leaks, make_fault_server, clean_env, data, where, caplog):
    srv = make_fault_server()
    srv.add("/f", data)
    srv.script("/f", [Status(404)] if where == "open" else [None, Status(404)])
    url = with_userinfo(srv.url("/f"), "user", "s3cret-pw")
    with pytest.raises(HTTPStatusError) as info:
        with kithara_io.open(url, **SMALL) as f:
            read_all(f)
    text = str(info.value)
    assert info.value.status == 404 and "s3cret-pw" not in text and "user:***@" in text
    assert srv.url("/f").split("://", 1)[1] in text  # still names the resource
    assert "s3cret-pw" not in caplog.text


@pytest.mark.parametrize("target", ["same-origin", "other-host"])
def test_cookie_set_by_a_redirect_goes_only_to_its_host(no_leaks, make_fault_server, clean_env, data, target):
    """A sign-in hop that sets a session cookie, then redirects to the file: the cookie is
    sent on every range request to its host, and never to another host."""
    a = make_fault_server(host="127.0.0.1")
    home = a if target == "same-origin" else make_fault_server(host="127.0.0.2")
    home.add("/f", data)
    a.always("/login", Status(302, headers={"Location": home.url("/f"), "Set-Cookie": "session=abc123; Path=/"}))
    with kithara_io.open(a.url("/login"), **SMALL) as f:
        assert read_all(f) == data
    recs = gets(home, "/f")
    assert len(recs) >= 16
    cookies = {r.headers.get("Cookie") for r in recs}
    assert cookies == ({"session=abc123"} if target == "same-origin" else {None})
