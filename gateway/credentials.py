"""The vendor credentials that only the gateway holds, added to each upstream request.

Built once from config; per request the gateway only copies prepared header and query values.
``sign`` is the one place a request gets them, so a scheme that signs the whole request (AWS
SigV4) fits the same call.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote

from multidict import CIMultiDict

from gateway.config.schema import CredentialsConfig


@dataclass(frozen=True, slots=True)
class VendorCredentials:
    headers: tuple[tuple[str, str], ...]
    query: tuple[tuple[str, str], ...]
    #: Every secret string, so logs can scrub it wherever it might turn up.
    secrets: frozenset[str]
    #: The username (account id) for providers that put it in paths.
    username: str
    #: Lower-case names of ``headers``: a client's copy of any of them is dropped.
    header_names: frozenset[str]

    def sign(self, method: str, url: str, headers: CIMultiDict[str], body: bytes) -> str:
        """Add the vendor's credentials to an outgoing request: headers in place, the URL returned."""
        for name, value in self.headers:
            headers[name] = value
        if self.query:
            suffix = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.query)
            url = url + ("&" if "?" in url else "?") + suffix
        return url

    @classmethod
    def from_config(cls, cfg: CredentialsConfig) -> VendorCredentials:
        def reveal(value: object) -> str:
            return value.get_secret_value() if value is not None else ""  # type: ignore[attr-defined]

        headers: tuple[tuple[str, str], ...] = ()
        query: tuple[tuple[str, str], ...] = ()
        secrets: set[str] = set()
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
        return cls(
            headers,
            query,
            frozenset(s for s in secrets if s),
            cfg.username,
            frozenset(name.lower() for name, _ in headers),
        )
