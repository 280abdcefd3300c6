"""Rate limits and OTP caps: per client, per route, per destination number and per destination
country, and the OTP caps of ``gateway.limits.otp``, counted together by one stage.

Limits are written in ``limits`` notation (``"600/minute"``, ``"5/hour"``) and counted with the
``limits`` library's strategies (``[limits] strategy``) and keys by ``gateway.storage.counters`` (memory,
or Redis through the same redis-py client as everything else, so they hold across replicas).
What is counted:

- ``client.rate_limits``: messages of one client, on every route together;
- ``route.rate_limits``: messages on one route, every client together;
- ``route.recipient_limits``: messages on one route to one number, keyed by an HMAC of the E.164
  form (storage never holds a number);
- ``route.country_limits``: messages on one route to one destination country (``"*"``: each
  country not listed, counted separately);
- the route's OTP caps (``gateway.limits.otp``): one slot per number, or per verification id.

A request to N numbers counts N messages, a number listed twice counting twice (both are sent).
Check all, then count all: every limit and OTP slot of a request is checked, and all are counted
only when none refuses, so a request refused by one limit spends no other limit's quota (a client
over its own limit cannot use up a route's or a number's). On Redis (not Cluster) one script call
does both steps and reads every figure, atomically: one round trip per request, allowed or
refused, whatever the number of limits. Each strategy's keys carry its letter (``f``, ``m``,
``s``), so a strategy changed by reload starts counters of its own instead of reading another's.

Answers: 429 ``rate_limited`` with ``Retry-After`` (whole seconds, at least 1) and the
``RateLimit-Limit``/``-Remaining``/``-Reset`` of the limit that refused (the one with the longest
wait when several did); when only an OTP cap refused, 429 ``otp_retry_cap`` (``gateway.limits.otp``). An
allowed request carries the ``RateLimit-*`` of the *tightest* limit that applied (fewest messages
per period; on a tie, the longest period).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar

from aiohttp import web
from limits import RateLimitItem, parse_many
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from gateway.core.errors import Reason, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.core.values import NO_COUNTRY
from gateway.limits.otp import OtpCaps, build_otp_caps
from gateway.storage.counters import (
    STRATEGY_CODES,
    Counted,
    Counters,
    Hit,
    LibraryCounters,
    ScriptCounters,
    Slot,
    Tally,
)
from gateway.storage.service import STORAGE_ERRORS, RedisKeyValue, StorageService, StorageUnavailable, skipped
from gateway.transport.proxy import may_have_reached_vendor

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.limits.context import LimitsBuild

__all__ = [
    "STRATEGIES",
    "Limits",
    "RateLimits",
    "build_limits",
    "build_rate_limits",
    "compile_rates",
    "limit_headers",
    "make_counters",
]

STRATEGIES: Final[Mapping[str, type[RateLimiter]]] = MappingProxyType(
    {
        "sliding-window-counter": SlidingWindowCounterRateLimiter,
        "moving-window": MovingWindowRateLimiter,
        "fixed-window": FixedWindowRateLimiter,
    }
)

T = TypeVar("T")

#: The country id of a number that has none (non-geographic, "+800 ..."), for ``"*"`` limits.


def compile_rates(texts: Iterable[str], scope: str) -> tuple[RateLimitItem, ...]:
    """Parsed once at policy build; ``scope`` is the namespace, the first part of every key."""
    items = [item for text in texts for item in parse_many(text)]
    # once each: one limit written twice is one counter, which a request must not check twice
    unique = dict.fromkeys((type(item), item.amount, item.multiples) for item in items)
    return tuple(kind(amount, multiples, namespace=scope) for kind, amount, multiples in unique)


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
        return LibraryCounters(STRATEGIES[strategy](storage.limiter), gather, storage.kv)
    return storage.memory_counters(strategy)


class RateLimits:
    """What a request counts against its rate limits, and the answers their figures give."""

    __slots__ = (
        "_clients",
        "_counters",
        "_countries",
        "_numbers",
        "_one",
        "_route",
        "_route_name",
        "_storage",
        "_tag",
    )

    def __init__(
        self,
        storage: StorageService,
        counters: Counters,
        strategy: str,
        route_name: str,
        clients: Mapping[str, tuple[RateLimitItem, ...]],
        route: tuple[RateLimitItem, ...],
        numbers: tuple[RateLimitItem, ...],
        countries: Mapping[str, tuple[RateLimitItem, ...]],
    ) -> None:
        self._storage = storage
        self._counters = counters
        #: The strategy's letter, in every key after its kind (``client/s/billing/...``): strategies
        #: never share a counter (a reload that changes it starts new ones, where the old keys
        #: would be of another Redis type).
        self._tag = STRATEGY_CODES[strategy]
        self._route_name = route_name
        self._clients = clients
        self._route = route
        self._numbers = numbers
        self._countries = countries
        #: The client's and the route's hits of a one-message request, made once (a hit is frozen):
        #: by client id, None for a request without a client.
        shared = tuple(Hit(item, (self._tag, route_name), 1) for item in route)
        self._one: dict[str | None, tuple[Hit, ...]] = {
            cid: tuple(Hit(item, (self._tag, cid), 1) for item in items) + shared
            for cid, items in clients.items()
        }
        self._one[None] = shared

    def hits(self, ex: Exchange) -> list[Hit]:
        """What this request counts against, and by how much."""
        destinations = ex.destinations
        messages = max(1, len(destinations))
        tag = self._tag
        client_id = ex.client.id if ex.client is not None else None
        hits: list[Hit]
        if messages == 1:
            one = self._one.get(client_id)
            hits = list(one if one is not None else self._one[None])
        else:
            hits = []
            if client_id is not None:
                client = (tag, client_id)
                hits = [Hit(item, client, messages) for item in self._clients.get(client_id, ())]
            route = (tag, self._route_name)
            hits += [Hit(item, route, messages) for item in self._route]
        if self._numbers and destinations:
            keys = self._storage.keys
            assert keys is not None  # check-config requires logging.hash_key for recipient_limits
            numbers = (
                ((destinations[0].e164, 1),)
                if len(destinations) == 1
                else Counter(d.e164 for d in destinations).items()
            )
            for e164, count in numbers:
                number = keys.digest("number", e164)
                hits.extend(Hit(item, (tag, self._route_name, number), count) for item in self._numbers)
        if self._countries and destinations:
            for region, count in Counter(d.region or NO_COUNTRY for d in destinations).items():
                items = self._countries.get(region)
                if items is None:
                    items = self._countries.get("*", ())
                hits.extend(Hit(item, (tag, self._route_name, region), count) for item in items)
        return hits

    async def answer(self, ex: Exchange, hits: list[Hit], tallies: list[Tally]) -> None:
        """Refuse (429) when a limit did; otherwise add the tightest limit's ``RateLimit-*``."""
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
            self._storage.failed(Detail.RATE_LIMITS)
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
            Reason.RATE_LIMITED, "rate limit reached; retry later", headers=headers, detail=hit.item.namespace
        )


class Limits:
    """Stage: every rate limit and OTP slot of this request, checked at once and counted only
    when none refuses (one round trip on Redis); OTP slots of a request that never reached the
    vendor are given back once the answer is known."""

    name = "limits"
    __slots__ = ("_counters", "_otp", "_rates", "_storage")

    def __init__(
        self, storage: StorageService, counters: Counters, rates: RateLimits | None, otp: OtpCaps | None
    ) -> None:
        self._storage = storage
        self._counters = counters
        self._rates = rates
        self._otp = otp

    async def run(self, ex: Exchange) -> None:
        hits = self._rates.hits(ex) if self._rates is not None else []
        slots = self._otp.slots(ex) if self._otp is not None else []
        if not (hits or slots):
            return
        storage = self._storage
        try:
            storage.check_up()
            counted = await self._counters.count(hits, slots)
        except StorageUnavailable:
            error = storage.unavailable(Detail.RATE_LIMITS if hits else Detail.OTP)
            if error is not None:
                raise error from None
            ex.detail = skipped(ex.detail, Detail.LIMITS_SKIPPED)
            return
        if not counted.counted:
            await self._refuse(ex, hits, counted)
        if slots:
            ex.held[self.name] = slots
        if hits:
            await self._rates.answer(ex, hits, counted.tallies)  # type: ignore[union-attr]

    async def _refuse(self, ex: Exchange, hits: list[Hit], counted: Counted) -> None:
        """A rate limit's refusal first (its figures and wait); else the OTP cap's."""
        if self._rates is not None and not all(t.allowed for t in counted.tallies):
            await self._rates.answer(ex, hits, counted.tallies)
        assert self._otp is not None
        raise self._otp.refusal(counted.waits)

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None:
        slots: list[Slot] | None = ex.held.pop(self.name, None)
        if not slots or may_have_reached_vendor(ex):
            return
        kv = self._storage.kv
        try:
            await gather(kv.free_slot(slot.key, slot.member) for slot in slots)
        except StorageUnavailable:
            pass  # the slot stays counted until it leaves the window: errs towards refusing


def build_rate_limits(route: RouteConfig, b: LimitsBuild, counters: Counters) -> RateLimits | None:
    """A route's rate limits, or None when none can apply to it."""
    clients = MappingProxyType(
        {c.id: compile_rates(c.rate_limits, Detail.CLIENT) for c in b.config.clients if c.rate_limits}
    )
    own = compile_rates(route.rate_limits, Detail.ROUTE)
    numbers = compile_rates(route.recipient_limits, Detail.NUMBER)
    countries = MappingProxyType(
        {code: compile_rates(rates, Detail.COUNTRY) for code, rates in route.country_limits.items() if rates}
    )
    if not (clients or own or numbers or countries):
        return None
    return RateLimits(
        b.services.storage,
        counters,
        b.config.settings.limits.strategy,
        route.name,
        clients,
        own,
        numbers,
        countries,
    )


def build_limits(route: RouteConfig, b: LimitsBuild) -> Limits | None:
    """The stage for a route's rate limits and OTP caps, or None when it has neither."""
    storage = b.services.storage
    counters = make_counters(storage, b.config.settings.limits.strategy)
    rates = build_rate_limits(route, b, counters)
    otp = build_otp_caps(route, b)
    if rates is None and otp is None:
        return None
    return Limits(storage, counters, rates, otp)
