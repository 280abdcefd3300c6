"""Rate limits: per client, per route, per destination number and per destination country.

Limits are written in ``limits`` notation (``"600/minute"``, ``"5/hour"``) and counted with the
``limits`` library's strategies (``[limits] strategy``) and keys by ``gateway.counters`` (memory,
or Redis through the same redis-py client as everything else, so they hold across replicas).
What is counted:

- ``client.rate_limits``: messages of one client, on every route together;
- ``route.rate_limits``: messages on one route, every client together;
- ``route.recipient_limits``: messages on one route to one number, keyed by an HMAC of the E.164
  form (storage never holds a number);
- ``route.country_limits``: messages on one route to one destination country (``"*"``: each
  country not listed, counted separately).

A request to N numbers counts N messages. All checks of a request go to storage at once: on Redis
(not Cluster) one script call counts every limit and reads its figures (``gateway.counters``), so
an allowed or refused request costs one round trip whatever the number of limits. A request
refused by one limit still counts against the others it passed (``limits`` has no "take back");
this errs towards refusing.

Answers: 429 ``rate_limited`` with ``Retry-After`` (whole seconds, at least 1) and the
``RateLimit-Limit``/``-Remaining``/``-Reset`` of the limit that refused (the one with the longest
wait when several did); an allowed request carries the ``RateLimit-*`` of the *tightest* limit
that applied (fewest messages per period; on a tie, the longest period).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar

from limits import RateLimitItem, parse_many
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from gateway.counters import Counters, Hit, LibraryCounters, ScriptCounters, Tally
from gateway.errors import refuse
from gateway.exchange import Exchange
from gateway.storage import STORAGE_ERRORS, RedisKeyValue, StorageService, StorageUnavailable, skipped

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.policy import Build

__all__ = ["STRATEGIES", "RateLimits", "build_rate_limits", "compile_rates", "limit_headers", "make_counters"]

STRATEGIES: Final[Mapping[str, type[RateLimiter]]] = MappingProxyType(
    {
        "sliding-window-counter": SlidingWindowCounterRateLimiter,
        "moving-window": MovingWindowRateLimiter,
        "fixed-window": FixedWindowRateLimiter,
    }
)

T = TypeVar("T")

#: The country id of a number that has none (non-geographic, "+800 ..."), for ``"*"`` limits.
NO_COUNTRY: Final = "ZZ"


def compile_rates(texts: Iterable[str], scope: str) -> tuple[RateLimitItem, ...]:
    """Parsed once at policy build; ``scope`` is the namespace, the first part of every key."""
    items = [item for text in texts for item in parse_many(text)]
    return tuple(type(item)(item.amount, item.multiples, namespace=scope) for item in items)


def limit_headers(limit: int, remaining: int, reset_s: int) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(max(0, reset_s)),
    }


async def gather(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Every call at once; all are awaited to the end, and any storage error becomes
    :class:`StorageUnavailable` (other exceptions, bugs, propagate)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, STORAGE_ERRORS):
            raise StorageUnavailable(type(result).__name__)
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def make_counters(storage: StorageService, strategy: str) -> Counters:
    """One script per request on Redis and Sentinel, the library's calls (at once) on Cluster,
    the same steps in this process for memory storage (shared by every route's stage)."""
    backend = storage.backend
    if isinstance(backend, RedisKeyValue):
        if storage.scheme != "redis+cluster":
            return ScriptCounters(backend, storage.limiter_prefix, strategy)
        return LibraryCounters(STRATEGIES[strategy](storage.limiter), gather)
    return storage.memory_counters(strategy)


class RateLimits:
    """Stage: every limit that applies to this request, checked at once."""

    name = "rate_limits"
    __slots__ = ("_clients", "_counters", "_countries", "_numbers", "_route", "_route_name", "_storage")

    def __init__(
        self,
        storage: StorageService,
        strategy: str,
        route_name: str,
        clients: Mapping[str, tuple[RateLimitItem, ...]],
        route: tuple[RateLimitItem, ...],
        numbers: tuple[RateLimitItem, ...],
        countries: Mapping[str, tuple[RateLimitItem, ...]],
    ) -> None:
        self._storage = storage
        self._counters = make_counters(storage, strategy)
        self._route_name = route_name
        self._clients = clients
        self._route = route
        self._numbers = numbers
        self._countries = countries

    def hits(self, ex: Exchange) -> list[Hit]:
        """What this request counts against, and by how much."""
        destinations = ex.destinations
        messages = max(1, len(destinations))
        hits: list[Hit] = []
        if ex.client is not None:
            hits.extend(Hit(item, (ex.client.id,), messages) for item in self._clients.get(ex.client.id, ()))
        hits.extend(Hit(item, (self._route_name,), messages) for item in self._route)
        if self._numbers and destinations:
            keys = self._storage.keys
            assert keys is not None  # check-config requires logging.hash_key for recipient_limits
            for e164, count in Counter(d.e164 for d in destinations).items():
                number = keys.digest("number", e164)
                hits.extend(Hit(item, (self._route_name, number), count) for item in self._numbers)
        if self._countries and destinations:
            for region, count in Counter(d.region or NO_COUNTRY for d in destinations).items():
                items = self._countries.get(region)
                if items is None:
                    items = self._countries.get("*", ())
                hits.extend(Hit(item, (self._route_name, region), count) for item in items)
        return hits

    async def run(self, ex: Exchange) -> None:
        hits = self.hits(ex)
        if not hits:
            return
        storage = self._storage
        try:
            storage.check_up()
            tallies = await self._counters.count(hits)
        except StorageUnavailable:
            error = storage.unavailable("rate_limits")
            if error is not None:
                raise error from None
            ex.detail = skipped(ex.detail, "limits_skipped")
            return
        refused = [(hit, t) for hit, t in zip(hits, tallies, strict=True) if not t.allowed]
        if refused:
            await self._refuse(ex, refused)
        tightest = min(range(len(hits)), key=lambda i: hits[i].tightness)
        figures = tallies[tightest].figures
        if figures is None:
            read = await self._figures([hits[tightest]])
            if not read:
                return
            figures = read[0]
        ex.response_headers.update(limit_headers(hits[tightest].item.amount, *figures))

    async def _figures(self, hits: list[Hit]) -> list[tuple[int, int]]:
        """Figures the count did not bring; empty when storage failed (the answer stands)."""
        try:
            return await self._counters.figures(hits)
        except StorageUnavailable:
            self._storage.failed("rate_limits")
            return []

    async def _refuse(self, ex: Exchange, refused: list[tuple[Hit, Tally]]) -> None:
        figures = [t.figures for _, t in refused]
        if any(f is None for f in figures):
            read = await self._figures([hit for hit, _ in refused])
            # no figures: the whole period is a safe wait
            figures = read or [(0, hit.item.get_expiry()) for hit, _ in refused]
        stats = [f for f in figures if f is not None]
        waits = [max(1, reset_s) for _, reset_s in stats]
        worst = max(range(len(refused)), key=lambda i: waits[i])
        hit = refused[worst][0]
        headers = limit_headers(hit.item.amount, stats[worst][0], waits[worst])
        headers["Retry-After"] = str(waits[worst])
        raise refuse(
            "rate_limited", "rate limit reached; retry later", headers=headers, detail=hit.item.namespace
        )


def build_rate_limits(route: RouteConfig, b: Build) -> RateLimits | None:
    """The stage for a route, or None when no limit can apply to it."""
    clients = MappingProxyType(
        {c.id: compile_rates(c.rate_limits, "client") for c in b.config.clients if c.rate_limits}
    )
    own = compile_rates(route.rate_limits, "route")
    numbers = compile_rates(route.recipient_limits, "number")
    countries = MappingProxyType(
        {code: compile_rates(rates, "country") for code, rates in route.country_limits.items() if rates}
    )
    if not (clients or own or numbers or countries):
        return None
    return RateLimits(
        b.services.storage,
        b.config.settings.limits.strategy,
        route.name,
        clients,
        own,
        numbers,
        countries,
    )
