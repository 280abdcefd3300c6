"""Rate limits counted in this process (``storage.url = "memory://"``): the Redis script's steps
over dicts."""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gateway.storage.hits import (
    STRATEGY_CODES,
    Counted,
    Hit,
    Slot,
    Tally,
    _reset_in,
    hit_key,
    sliding_figures,
)

if TYPE_CHECKING:
    from gateway.storage.keyvalue import MemoryKeyValue

__all__ = ["MemoryCounters"]


class MemoryCounters:
    """The script's steps (``_COUNT``) over dicts in this process, figures included, and OTP
    slots in the memory key-value storage (``slots``): every check, then every write.

    Expired entries go when they are met, and in a sweep of all of them whenever the table has
    doubled since the last one or a minute has passed: amortised constant work per hit, and
    memory bounded by the keys live within their periods.
    """

    __slots__ = (
        "_clock",
        "_code",
        "_expires",
        "_lists",
        "_next_sweep",
        "_slots",
        "_steps",
        "_sweep_at",
        "_values",
    )

    def __init__(
        self, strategy: str, clock: Callable[[], float] = time.time, slots: MemoryKeyValue | None = None
    ) -> None:
        self._code = STRATEGY_CODES[strategy]
        self._clock = clock
        self._slots = slots
        self._values: dict[str, int] = {}
        self._lists: dict[str, list[float]] = {}  # moving window: timestamps, oldest first
        self._expires: dict[str, float] = {}
        self._next_sweep = 1024
        self._sweep_at = clock() + 60
        #: The strategy's check, write and figures.
        self._steps = {
            "f": (self._fixed_ok, self._fixed_add, self._fixed_figures),
            "m": (self._moving_ok, self._moving_add, self._moving_figures),
            "s": (self._sliding_ok, self._sliding_add, self._sliding_figures),
        }[self._code]

    # -- a key with a deadline, as Redis keeps it ----------------------------------------------

    def _live(self, key: str, now: float) -> bool:
        expires = self._expires.get(key)
        if expires is None:
            return key in self._values or key in self._lists
        if expires > now:
            return True
        self._drop(key)
        return False

    def _drop(self, key: str) -> None:
        self._expires.pop(key, None)
        self._values.pop(key, None)
        self._lists.pop(key, None)

    def _ttl(self, key: str, now: float) -> float:
        """Seconds left; 0 for a key that is gone."""
        return self._expires[key] - now if self._live(key, now) else 0.0

    def _sweep(self, now: float) -> None:
        if len(self._expires) < self._next_sweep and now < self._sweep_at:
            return
        for key in [k for k, expires in self._expires.items() if expires <= now]:
            self._drop(key)
        self._next_sweep = max(1024, 2 * len(self._expires))
        self._sweep_at = now + 60

    # -- the strategies: check (reading a state), write, figures (from the state) -------------

    async def count(self, hits: Sequence[Hit], slots: Sequence[Slot] = ()) -> Counted:
        now = self._clock()
        self._sweep(now)
        check, add, read = self._steps
        keys = [hit_key(hit) for hit in hits]
        states = [check(key, hit, now) for key, hit in zip(keys, hits, strict=True)]
        counted = all(state[0] for state in states)
        waits: list[float] = []
        wall = 0.0
        kv = self._slots
        if slots:
            assert kv is not None, "OTP slots need the memory key-value storage"
            wall = time.time()  # OTP logs keep wall-clock times, as MemoryKeyValue.take_slot does
            waits = [kv.slot_wait_at(s.key, s.limit, s.window_s, s.gap_s, wall) for s in slots]
            counted = counted and all(w <= 0 for w in waits)
        if counted:
            for key, hit, state in zip(keys, hits, states, strict=True):
                add(key, hit, now, state)
            for s in slots:
                assert kv is not None
                kv.put_slot(s.key, s.member, s.window_s, s.gap_s, wall)
        tallies = [Tally(state[0], read(hit, now, state)) for hit, state in zip(hits, states, strict=True)]
        return Counted(tallies, waits, counted)

    async def figures(self, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        raise AssertionError("every tally carries its figures")

    # fixed window, state: [allowed, count, seconds to expiry, live]

    def _fixed_ok(self, key: str, hit: Hit, now: float) -> list[Any]:
        live = self._live(key, now)
        count = self._values[key] if live else 0
        return [count + hit.cost <= hit.item.amount, count, self._expires[key] - now if live else 0.0, live]

    def _fixed_add(self, key: str, hit: Hit, now: float, state: list[Any]) -> None:
        state[1] = self._values[key] = state[1] + hit.cost
        if not state[3]:
            self._expires[key] = now + hit.item.get_expiry()
            state[2] = float(hit.item.get_expiry())

    def _fixed_figures(self, hit: Hit, now: float, state: list[Any]) -> tuple[int, int]:
        return max(0, hit.item.amount - state[1]), math.ceil(state[2])

    # moving window, state: [allowed, entries (timestamps, oldest first)]

    def _moving_ok(self, key: str, hit: Hit, now: float) -> list[Any]:
        limit, amount = hit.item.amount, hit.cost
        entries = self._lists.get(key, []) if self._live(key, now) else []
        # the entry ``limit - amount`` places from the newest, as LINDEX counts from the head
        position = len(entries) - 1 - (limit - amount)
        ok = amount <= limit and not (position >= 0 and entries[position] >= now - hit.item.get_expiry())
        return [ok, entries]

    def _moving_add(self, key: str, hit: Hit, now: float, state: list[Any]) -> None:
        entries: list[float] = state[1]
        entries.extend([now] * hit.cost)
        del entries[: max(0, len(entries) - hit.item.amount)]
        self._lists[key] = entries
        self._expires[key] = now + hit.item.get_expiry()

    def _moving_figures(self, hit: Hit, now: float, state: list[Any]) -> tuple[int, int]:
        limit, expiry, entries = hit.item.amount, hit.item.get_expiry(), state[1]
        first = bisect_left(entries, now - expiry)
        in_window = len(entries) - first
        oldest = entries[first] if in_window else now
        return limit - in_window, _reset_in(oldest + expiry, now)

    # sliding window counter, state: [allowed, previous, its ttl, current, its ttl, current live]

    def _sliding_ok(self, key: str, hit: Hit, now: float) -> list[Any]:
        limit, expiry, amount = hit.item.amount, hit.item.get_expiry(), hit.cost
        previous_key, current_key = f"{{{key}}}/-1", f"{{{key}}}"
        values, expires = self._values, self._expires
        current_ttl = self._ttl(current_key, now) if current_key in expires else 0.0
        if 0 < current_ttl < expiry:  # the current window is over: it becomes the previous one
            values[previous_key] = values.pop(current_key)
            expires[previous_key] = expires.pop(current_key)
            values[current_key] = 0
            expires[current_key] = now + current_ttl + expiry
            current_ttl += expiry
        previous_ttl = self._ttl(previous_key, now) if previous_key in expires else 0.0
        previous = values.get(previous_key, 0) if previous_ttl else 0
        current = values.get(current_key, 0) if current_ttl else 0
        weighted = math.floor(previous * previous_ttl / expiry) + current
        ok = amount <= limit and weighted + amount <= limit
        return [ok, previous, previous_ttl, current, current_ttl, current_ttl > 0]

    def _sliding_add(self, key: str, hit: Hit, now: float, state: list[Any]) -> None:
        current_key = f"{{{key}}}"
        if state[5]:
            state[3] = self._values[current_key] = state[3] + hit.cost
        else:
            state[3] = self._values[current_key] = hit.cost
            state[4] = 2.0 * hit.item.get_expiry()
            self._expires[current_key] = now + state[4]

    def _sliding_figures(self, hit: Hit, now: float, state: list[Any]) -> tuple[int, int]:
        _, previous, previous_ttl, current, current_ttl, _ = state
        return sliding_figures(
            hit.item.amount, hit.item.get_expiry(), previous, previous_ttl, current, current_ttl
        )
