"""The network layer every source kind goes through (issue 24).

- :mod:`.policy`: per-origin decisions: headers and credentials, environment proxies and
  netrc, cookies, TLS (:mod:`.tls`: one shared context per CA bundle and certificate);
- :mod:`.redirects`: the redirect loop;
- :mod:`.connections`: kept-alive ``http.client`` connections per origin, aborts, fork reset;
- :mod:`.response`: one answer and its body;  :mod:`.client`: the request itself;
- :mod:`.errors`: a request without an answer as a StreamError;  :mod:`.urls`: URL pieces.
"""

from .client import Client
from .policy import Policy, without_credentials
from .response import Response
from .urls import origin

__all__ = ["Client", "Policy", "Response", "origin", "without_credentials"]
