"""``s3://bucket/key``: the endpoint URL and a SigV4 signer (botocore), from where AWS users
keep their settings.

Credentials: ``key``/``secret``/``token`` options, else botocore's standard chain for
``profile`` (environment variables, shared credentials and config files, SSO, container
and instance metadata); ``anon=True`` or no credentials at all: unsigned requests (public
buckets). Endpoint: ``endpoint_url`` (or ``client_kwargs={"endpoint_url": ...}``, as s3fs),
else ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's ``services`` section and
``endpoint_url`` (botocore's documented order), else AWS in the region (``region``, the
profile's, else ``us-east-1``). A custom endpoint (MinIO, R2, Ceph, moto) is addressed
path-style; AWS virtual-hosted where the bucket name allows it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import quote

from .common import Signer, Target, need

log = logging.getLogger(__name__)

OPTIONS = ("key", "secret", "token", "profile", "region", "endpoint_url", "client_kwargs", "anon")

_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def target(bucket: str, key: str, options: Mapping[str, Any], headers: Mapping[str, str]) -> Target:
    """The object's URL, the signer of its requests, and ``AWS_CA_BUNDLE`` (or the
    profile's ``ca_bundle``)."""
    need("botocore", "s3", "s3://")
    client_kwargs = dict(options.get("client_kwargs") or {})
    env = tuple((k, v) for k, v in sorted(os.environ.items()) if k.startswith("AWS_"))
    configured = _configured(options.get("profile"), env)
    region = options.get("region") or client_kwargs.get("region_name") or configured.region or "us-east-1"
    endpoint = options.get("endpoint_url") or client_kwargs.get("endpoint_url") or configured.endpoint
    path = quote(key, safe="/")  # AWS's UriEncode: all but A-Z a-z 0-9 - _ . ~ and the key's slashes
    if endpoint:
        url = f"{endpoint.rstrip('/')}/{bucket}/{path}"
    elif _DNS_BUCKET.match(bucket):
        url = f"https://{bucket}.s3.{region}.amazonaws.com/{path}"
    else:  # dots or capitals: the certificate of the virtual host would not match
        url = f"https://s3.{region}.amazonaws.com/{bucket}/{path}"
    credentials = None
    if not options.get("anon"):
        if options.get("key") or options.get("secret"):
            from botocore.credentials import Credentials

            credentials = Credentials(options.get("key"), options.get("secret"), options.get("token"))
        else:
            credentials = _chain_credentials(options.get("profile"), env)
            if credentials is None:
                log.info("s3://%s/%s: no AWS credentials found; unsigned requests", bucket, key)
    moved = "" if endpoint else f"is the bucket in another region than {region}? (the region option, or AWS_REGION)"
    return Target(url, SigV4Signer(credentials, region, headers), configured.ca_bundle, moved)


class _Configured(NamedTuple):
    session: Any  # botocore.session.Session
    region: Optional[str]
    endpoint: Optional[str]
    ca_bundle: Optional[str]


# What botocore finds for a profile under the AWS_* variables ``env`` is looked up once per
# process (30 ms: the config files; the credential chain may ask the instance metadata
# service), as boto3's default session does; a change of the variables is a new lookup.
@functools.lru_cache(maxsize=8)
def _configured(profile: Optional[str], env: Tuple[Tuple[str, str], ...]) -> _Configured:
    import botocore.session

    session = botocore.session.Session(profile=profile)
    get = session.get_config_variable
    return _Configured(session, get("region"), _configured_endpoint(session), get("ca_bundle"))


@functools.lru_cache(maxsize=8)
def _chain_credentials(profile: Optional[str], env: Tuple[Tuple[str, str], ...]) -> Any:
    """botocore's credential chain (refreshable credentials refresh themselves), or None."""
    return _configured(profile, env).session.get_credentials()


def _configured_endpoint(session: Any) -> Optional[str]:
    """The endpoint configured for S3, in botocore's documented order; None for AWS."""
    env = os.environ
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    found = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if found:
        return found
    scoped = session.get_scoped_config()
    if scoped.get("ignore_configured_endpoint_urls", "").lower() == "true":
        return None
    section = scoped.get("services")
    if section:
        found = (session.full_config.get("services", {}).get(section, {}).get("s3") or {}).get("endpoint_url")
    return found or scoped.get("endpoint_url")


class SigV4Signer(Signer):
    """Signs each request with botocore's S3 SigV4 signer: the host, the ``x-amz-*``
    headers and the request's own (Range, conditions) are signed; None: unsigned."""

    def __init__(self, credentials: Any, region: str, headers: Mapping[str, str]) -> None:
        super().__init__(headers)
        self._credentials = credentials  # refreshable ones refresh under botocore's own lock
        self._region = region

    def sign_store(self, method: str, url: str, headers: Dict[str, str]) -> Dict[str, str]:
        if self._credentials is None:
            return headers
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        frozen = self._credentials.get_frozen_credentials()
        request = AWSRequest(method=method, url=url, headers=headers)
        S3SigV4Auth(frozen, "s3", self._region).add_auth(request)
        return dict(request.headers.items())
