"""What a request's limits and OTP slots are counted as (:class:`Hit`, :class:`Slot`), what
counting answers (:class:`Tally`, :class:`Counted`), and the figures every backend computes alike.
The backends are in gateway/storage/counters.py and gateway/storage/memory_counters.py."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from limits import RateLimitItem

__all__ = ["STRATEGY_CODES", "Counted", "Counters", "Hit", "Slot", "Tally", "hit_key", "sliding_figures"]

#: A strategy's letter: the script's step, and the tag that keeps its keys apart from the others'.
STRATEGY_CODES: Final = {"fixed-window": "f", "moving-window": "m", "sliding-window-counter": "s"}


@dataclass(frozen=True, slots=True)
class Hit:
    """One limit a request counts against: the item, whose count it is, and how many messages."""

    item: RateLimitItem
    identifiers: tuple[str, ...]
    cost: int

    @property
    def tightness(self) -> tuple[int, int]:
        return (self.item.amount, -self.item.get_expiry())


@dataclass(frozen=True, slots=True)
class Tally:
    """A limit's answer; ``figures`` is (remaining, whole seconds to reset), None when not read."""

    allowed: bool
    figures: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """One OTP slot a request takes (``gateway.limits.otp``): the log at ``key`` (prefixed) may hold at
    most ``limit`` members younger than ``window_s``, the newest at least ``gap_s`` old."""

    key: str
    member: str
    limit: int
    window_s: float
    gap_s: float


@dataclass(frozen=True, slots=True)
class Counted:
    """A request's answer: a tally per hit, a wait per slot (0.0: it fits; else seconds until it
    would); ``counted`` is True when every hit and slot allowed it, and then all were counted."""

    tallies: list[Tally]
    waits: list[float]
    counted: bool


def _all_allowed(tallies: Sequence[Tally], waits: Sequence[float]) -> bool:
    return all(t.allowed for t in tallies) and all(w <= 0 for w in waits)


class Counters(Protocol):
    async def count(self, hits: Sequence[Hit], slots: Sequence[Slot] = ()) -> Counted:
        """Check every hit and slot; count them all only when none refuses. A tally's
        ``allowed`` says whether that limit alone would let the request pass."""
        ...

    async def figures(self, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        """(remaining, seconds to reset) of limits whose tally came without them."""
        ...


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def hit_key(hit: Hit) -> str:
    """``hit.item.key_for(*hit.identifiers)``, the same text for the text identifiers a hit
    carries, in one format call instead of the library's conversion of every part."""
    item = hit.item
    return (
        f"{item.namespace}/{'/'.join(hit.identifiers)}/{item.amount}/{item.multiples}/{item.GRANULARITY.name}"
    )


def _reset_in(reset_time: float, now: float) -> int:
    return math.ceil(max(0.0, reset_time - now))


def sliding_figures(
    limit: int, expiry: int, previous: int, previous_ttl_s: float, current: int, current_ttl_s: float
) -> tuple[int, int]:
    """The sliding window counter's (remaining, seconds to reset), as ``limits`` computes them.

    One difference: a current window read in the millisecond it was made has a TTL of exactly two
    periods, which ``limits`` turns into a reset of 0 s; the wait is then a whole period.
    """
    weighted = previous * previous_ttl_s / expiry + current
    remaining = max(0, limit - math.floor(weighted))
    if not (previous or current):
        return remaining, 0
    reset_in = math.inf
    if previous:
        reset_in = previous_ttl_s % (expiry / previous)
    if current:
        reset_in = min(reset_in, current_ttl_s % expiry or float(expiry))
    return remaining, math.ceil(reset_in)
