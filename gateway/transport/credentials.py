"""The vendor credentials that only the gateway holds, added to each upstream request.

Built once from config; per request the gateway only copies prepared header and query values.
``sign`` is the one place a request gets them, so a scheme that signs the whole request (AWS
SigV4) fits the same call.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

from multidict import CIMultiDict

from gateway.config.schema import CredentialsConfig


@dataclass(frozen=True, slots=True)
class AwsKey:
    """What SigV4 signs with; botocore is imported when the config is loaded, not per request."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(repr=False)
    region: str
    service: str


@dataclass(frozen=True, slots=True)
class VendorCredentials:
    """Never shown whole: its repr names only the header and query names it sets, so a debug print
    or an exception that formats it cannot carry a credential into a log."""

    headers: tuple[tuple[str, str], ...] = field(repr=False)
    query: tuple[tuple[str, str], ...] = field(repr=False)
    #: Every secret string, so logs can scrub it wherever it might turn up.
    secrets: frozenset[str] = field(repr=False)
    #: The username (account id) for providers that put it in paths.
    username: str
    #: Lower-case names of ``headers``: a client's copy of any of them is dropped.
    header_names: frozenset[str]
    #: The basic password, for vendors that take username and password in the query on some paths.
    password: str = field(default="", repr=False)
    aws: AwsKey | None = None

    def sign(
        self,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        query_credentials: tuple[str, str] | None = None,
    ) -> str:
        """Add the vendor's credentials to an outgoing request: headers in place, the URL returned.

        ``query_credentials`` names the query parameters that take the basic username and password
        on this path (Messente's legacy API) instead of the Authorization header.
        """
        if query_credentials is not None:
            pairs: tuple[tuple[str, str], ...] = (
                (query_credentials[0], self.username),
                (query_credentials[1], self.password),
            )
        else:
            for name, value in self.headers:
                headers[name] = value
            pairs = self.query
        if pairs:
            suffix = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
            url = url + ("&" if "?" in url else "?") + suffix
        if self.aws is not None:
            _sign_sigv4(self.aws, method, url, headers, body)
        return url

    @classmethod
    def from_config(cls, cfg: CredentialsConfig) -> VendorCredentials:
        def reveal(value: object) -> str:
            return value.get_secret_value() if value is not None else ""  # type: ignore[attr-defined]

        headers: tuple[tuple[str, str], ...] = ()
        query: tuple[tuple[str, str], ...] = ()
        secrets: set[str] = set()
        password = ""
        aws: AwsKey | None = None
        if cfg.type == "basic":
            password = reveal(cfg.password)
            token = base64.b64encode(f"{cfg.username}:{password}".encode()).decode("ascii")
            headers = (("Authorization", f"Basic {token}"),)
            secrets |= {password, token}
        elif cfg.type == "bearer":
            token = reveal(cfg.token)
            headers = (("Authorization", f"Bearer {token}"),)
            secrets.add(token)
        elif cfg.type == "header":
            value = reveal(cfg.value)
            headers = ((cfg.name, value),)
            secrets.add(value)
        elif cfg.type == "query":
            value = reveal(cfg.value)
            query = ((cfg.name, value),)
            secrets.add(value)
        elif cfg.type == "aws-sigv4":
            aws = AwsKey(
                cfg.username, reveal(cfg.password), reveal(cfg.token) or None, cfg.region, cfg.service
            )
            secrets |= {aws.secret_key, aws.token or ""}
        return cls(
            headers,
            query,
            frozenset(s for s in secrets if s),
            cfg.username,
            frozenset(name.lower() for name, _ in headers),
            password,
            aws,
        )


#: Headers the gateway's SigV4 signature covers besides Host; a client's ``X-Amz-*`` headers
#: belong to its own signature and are dropped before signing.
_SIGNED: Final = ("content-type",)


def _sign_sigv4(key: AwsKey, method: str, url: str, headers: CIMultiDict[str], body: bytes) -> None:
    """Sign with botocore's SigV4 (the optional ``aws`` extra): the body is signed as sent."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    for name in [n for n in headers if n.lower().startswith("x-amz-")]:
        del headers[name]
    signed = {name: value for name, value in headers.items() if name.lower() in _SIGNED}
    request = AWSRequest(method=method, url=url, headers=signed, data=body)
    SigV4Auth(Credentials(key.access_key, key.secret_key, key.token), key.service, key.region).add_auth(
        request
    )
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value
