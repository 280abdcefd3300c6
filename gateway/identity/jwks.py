"""JWKS key sets fetched from the issuers, kept across policies (a long-lived service).

Each ``jwks_url`` has one :class:`JwksCache`. It is fetched when the gateway starts, again every
``jwks_refresh_s`` in the background, and on demand when a token names a ``kid`` the set does not
hold — at most once per :data:`ON_DEMAND_INTERVAL_S` per key set, so a flood of tokens with made-up
key ids costs the issuer one request per interval, not one per token. A failed fetch keeps the
last good set: an identity provider's outage does not log everyone out. Fetches use verified TLS
(system CAs, or ``jwks_ca_file``), follow no redirect and read at most :data:`MAX_JWKS_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import aiohttp
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from gateway.identity.keys import PublicKey, key_fits

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.config.schema import JWTIssuerConfig

log = logging.getLogger("smsgw")

__all__ = ["ON_DEMAND_INTERVAL_S", "JwksCache", "JwksService", "KeySet"]

#: A token with an unknown ``kid`` triggers a refetch at most this often per key set.
ON_DEMAND_INTERVAL_S = 30.0
MAX_JWKS_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class SetKey:
    key: PublicKey
    #: The JWK's own ``alg``, when it names one: then only that algorithm may use the key.
    alg: str | None

    def allows(self, alg: str) -> bool:
        return (self.alg is None or self.alg == alg) and key_fits(alg, self.key)


@dataclass(frozen=True, slots=True)
class KeySet:
    """Keys by ``kid`` (None for keys without one); ``generation`` changes when the set does."""

    by_kid: Mapping[str | None, tuple[SetKey, ...]]
    generation: int
    #: The usable keys' canonical JSON: a refetch that returns the same set changes nothing.
    fingerprint: str = ""

    def find(self, kid: str | None) -> tuple[SetKey, ...]:
        if kid is None:  # a token without kid may use any key of the set (one-key issuers)
            return tuple(k for keys in self.by_kid.values() for k in keys)
        return self.by_kid.get(kid, ())


EMPTY = KeySet(MappingProxyType({}), 0, "")


class JwksError(Exception):
    """A fetch that gave no usable key set (the message says why, never the response body)."""


def parse_jwks(document: bytes, generation: int) -> KeySet:
    """Signature keys of a JWKS document; symmetric (``oct``) and encryption keys are dropped."""
    try:
        data = json.loads(document)
    except ValueError:
        raise JwksError("the key set is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksError("the key set has no 'keys' list")
    usable = [
        jwk
        for jwk in data["keys"]
        if isinstance(jwk, dict) and jwk.get("kty") in ("RSA", "EC", "OKP") and jwk.get("use", "sig") == "sig"
    ]
    by_kid: dict[str | None, list[SetKey]] = {}
    for jwk in usable:
        try:
            parsed = PyJWK(jwk)
        except PyJWTError:
            continue  # an unsupported curve or key type: the rest of the set still counts
        kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
        alg = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
        by_kid.setdefault(kid, []).append(SetKey(parsed.key, alg))
    if not by_kid:
        raise JwksError("the key set holds no usable signature key")
    fingerprint = json.dumps(usable, sort_keys=True)
    return KeySet(MappingProxyType({k: tuple(v) for k, v in by_kid.items()}), generation, fingerprint)


class JwksCache:
    """One issuer's key set; see the module docstring for when it is fetched."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext, timeout_s: float, refresh_s: float) -> None:
        self.url = url
        self.keys = EMPTY
        self.fetches = 0  # attempts, successful or not (a metric and the tests read it)
        self.failures = 0
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._refresh_s = refresh_s
        self._session: aiohttp.ClientSession | None = None
        self._last_on_demand = -float("inf")
        self._inflight: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        await self.refresh()
        self._loop_task = asyncio.create_task(self._periodic(), name=f"jwks refresh {self.url}")

    async def close(self) -> None:
        for task in (self._loop_task, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loop_task = self._inflight = None

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self.refresh()

    async def refresh(self) -> None:
        """Fetch now (one fetch at a time: concurrent callers wait for the same one)."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._fetch())
        await asyncio.shield(self._inflight)

    async def keys_for(self, kid: str | None) -> tuple[SetKey, ...]:
        """Keys for ``kid``; an unknown one refetches the set if the last on-demand fetch is old enough."""
        found = self.keys.find(kid)
        if found:
            return found
        now = time.monotonic()
        if now - self._last_on_demand >= ON_DEMAND_INTERVAL_S:
            self._last_on_demand = now
            await self.refresh()
        return self.keys.find(kid)

    async def _fetch(self) -> None:
        if self._session is None:
            return
        self.fetches += 1
        try:
            async with self._session.get(
                self.url, ssl=self._ssl, timeout=self._timeout, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise JwksError(f"the key set answered {response.status}")
                body = await response.content.read(MAX_JWKS_BYTES + 1)
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
            fresh = parse_jwks(body, self.keys.generation + 1)
        except Exception as exc:  # whatever went wrong, the last good set stays and the loop lives
            self.failures += 1
            reason = str(exc) if isinstance(exc, JwksError) else type(exc).__name__
            log.warning("JWKS fetch from %s failed (%s); keeping the last good key set", self.url, reason)
            return
        if fresh.fingerprint != self.keys.fingerprint:
            self.keys = fresh


class JwksService:
    """Every configured ``jwks_url``'s cache and the one client session that fetches them."""

    def __init__(self, config: Config) -> None:
        self._base_dir = config.base_dir
        self._caches: dict[tuple[str, str], JwksCache] = {}
        self._session: aiohttp.ClientSession | None = None
        self._running = False
        self._starting: set[asyncio.Task[None]] = set()
        for issuer in config.settings.auth.jwt.issuers:
            if issuer.jwks_url:
                self.cache_for(issuer)

    def cache_for(self, issuer: JWTIssuerConfig) -> JwksCache:
        """The cache of this issuer's key set (made on first use, e.g. after a reload added it)."""
        key = (issuer.jwks_url, issuer.jwks_ca_file)
        cache = self._caches.get(key)
        if cache is None:
            ca_file = issuer.jwks_ca_file
            if ca_file and not Path(ca_file).is_absolute():
                ca_file = str(self._base_dir / ca_file)
            context = ssl.create_default_context(cafile=ca_file or None)
            cache = JwksCache(issuer.jwks_url, context, issuer.jwks_timeout_s, issuer.jwks_refresh_s)
            self._caches[key] = cache
            if self._running:  # a reload added it: fetch in the background
                if self._session is None:
                    self._session = aiohttp.ClientSession(trust_env=False)
                cache._session = self._session  # a token that comes first may fetch on demand
                task = asyncio.get_running_loop().create_task(cache.start(self._session))
                self._starting.add(task)
                task.add_done_callback(self._starting.discard)
        return cache

    def counts(self) -> list[tuple[str, int, int]]:
        """``(url, fetches, failures)`` of every key set, for the metrics."""
        return [(cache.url, cache.fetches, cache.failures) for cache in self._caches.values()]

    async def start(self) -> None:
        self._running = True
        if not self._caches:
            return
        self._session = aiohttp.ClientSession(trust_env=False)
        await asyncio.gather(*(cache.start(self._session) for cache in self._caches.values()))

    async def close(self) -> None:
        self._running = False
        starting = list(self._starting)
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        for cache in self._caches.values():
            await cache.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
