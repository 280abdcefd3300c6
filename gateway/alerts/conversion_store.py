"""Where the pumping guard counts (gateway/alerts/conversion.py): the same steps over this process's
memory (``memory://``) or in one Lua script on Redis, shared by every replica and worker.

The guard decides nothing here; a store reads a send's figures, refuses to count it when ``block``
and a subject is low (:func:`is_low`), and redeems the marks approved checks leave.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from gateway.storage.service import RedisKeyValue, StorageService

__all__ = [
    "ConversionStore",
    "MemoryConversionStore",
    "RedisConversionStore",
    "SendCount",
    "is_low",
    "make_store",
]


def is_low(sends: int, converted: int, min_sends: int, threshold: float) -> bool:
    """Enough due sends, and too few of them converted."""
    return sends >= min_sends and converted < threshold * sends


@dataclass(frozen=True, slots=True)
class SendCount:
    """One send's call: what to add, what to read (per subject: due sends and due conversions),
    and the marks that let checks find their send's bucket."""

    adds: tuple[str, ...]
    groups: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    marks: tuple[tuple[str, bytes], ...]
    ttl_s: float
    min_sends: int
    threshold: float
    block: bool


class ConversionStore(Protocol):
    async def send(self, call: SendCount) -> tuple[int, list[tuple[int, int]]]:
        """Read every subject's due figures; unless ``block`` and one is low, count the send and
        leave its marks. Returns (index of the first low subject + 1, or 0; (sends, converted)
        per subject)."""
        ...

    async def take_back(self, adds: Sequence[str], marks: Sequence[str]) -> None:
        """Undo a counted send the vendor did not accept."""
        ...

    async def redeem(self, mark: str, ttl_s: float) -> int:
        """Count the conversion a mark names, once; how many counters it added to."""
        ...

    async def clear(self, keys: Sequence[str]) -> None:
        """Forget these counters (a subject's, up to now: ``smsgw alerts clear``)."""
        ...


class MemoryConversionStore:
    """This process's counters (``memory://``), the same steps as the Redis script."""

    __slots__ = ("_counts", "_marks")

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._marks: dict[str, tuple[bytes, float]] = {}

    def _get(self, key: str, now: float) -> int:
        item = self._counts.get(key)
        if item is None or item[1] <= now:
            return 0
        return item[0]

    def _incr(self, key: str, amount: int, ttl_s: float, now: float) -> None:
        item = self._counts.get(key)
        if item is None or item[1] <= now:
            self._counts[key] = (amount, now + ttl_s)
        else:
            self._counts[key] = (item[0] + amount, item[1])

    def _sweep(self, now: float) -> None:
        if len(self._counts) + len(self._marks) > 100_000:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            self._marks = {k: v for k, v in self._marks.items() if v[1] > now}

    async def send(self, call: SendCount) -> tuple[int, list[tuple[int, int]]]:
        now = time.monotonic()
        figures: list[tuple[int, int]] = []
        low = 0
        for index, (sends, converted) in enumerate(call.groups, 1):
            pair = (sum(self._get(k, now) for k in sends), sum(self._get(k, now) for k in converted))
            figures.append(pair)
            if not low and is_low(*pair, call.min_sends, call.threshold):
                low = index
        if low and call.block:
            return low, figures
        self._sweep(now)
        for key in call.adds:
            self._incr(key, 1, call.ttl_s, now)
        for key, value in call.marks:
            self._marks[key] = (value, now + call.ttl_s)
        return low, figures

    async def take_back(self, adds: Sequence[str], marks: Sequence[str]) -> None:
        now = time.monotonic()
        for key in adds:
            if self._get(key, now) > 0:
                self._incr(key, -1, 0, now)
        for key in marks:
            self._marks.pop(key, None)

    async def redeem(self, mark: str, ttl_s: float) -> int:
        now = time.monotonic()
        item = self._marks.pop(mark, None)
        if item is None or item[1] <= now:
            return 0
        keys = item[0].decode("ascii").split("\n")
        for key in keys:
            self._incr(key, 1, ttl_s, now)
        return len(keys)

    async def clear(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._counts.pop(key, None)


#: ``send``: KEYS = adds, then per subject m due send keys and m due conversion keys, then the
#: marks. ARGV = #adds, #subjects, m, ttl ms, min_sends, threshold, block, mark values.
_SEND: Final = """
local nadd, nsub, m = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, min, thr, block = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'
local out, low, k = {0}, 0, nadd + 1
for i = 1, nsub do
  local s, c = 0, 0
  for j = 1, m do
    s = s + tonumber(redis.call('GET', KEYS[k + j - 1]) or '0')
    c = c + tonumber(redis.call('GET', KEYS[k + m + j - 1]) or '0')
  end
  out[#out + 1] = s
  out[#out + 1] = c
  if low == 0 and s >= min and c < thr * s then low = i end
  k = k + 2 * m
end
out[1] = low
if low > 0 and block then return out end
for i = 1, nadd do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ttl) end
end
for i = k, #KEYS do
  redis.call('SET', KEYS[i], ARGV[7 + i - k + 1], 'PX', ttl)
end
return out
"""

#: ``redeem``: the mark names the counters to add to (one per line); it is used once.
_REDEEM: Final = """
local mark = redis.call('GET', KEYS[1])
if not mark then return 0 end
redis.call('DEL', KEYS[1])
local n = 0
for key in string.gmatch(mark, '[^\\n]+') do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  n = n + 1
end
return n
"""

#: ``take_back``: KEYS = adds then marks; ARGV = #adds.
_TAKE_BACK: Final = """
local nadd = tonumber(ARGV[1])
for i = 1, nadd do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
for i = nadd + 1, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""


#: ``clear``: the subject's counters, gone (one call; the keys share the hash tag).
_CLEAR: Final = """
for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
return #KEYS
"""


class RedisConversionStore:
    """Shared by every replica and worker: one script call a send, one an approved check."""

    __slots__ = ("_backend", "_clear", "_redeem", "_send", "_take_back")

    def __init__(self, backend: RedisKeyValue) -> None:
        self._backend = backend
        self._send = backend.script(_SEND)
        self._redeem = backend.script(_REDEEM)
        self._take_back = backend.script(_TAKE_BACK)
        self._clear = backend.script(_CLEAR)

    async def send(self, call: SendCount) -> tuple[int, list[tuple[int, int]]]:
        keys: list[str] = list(call.adds)
        for sends, converted in call.groups:
            keys.extend(sends)
            keys.extend(converted)
        keys.extend(key for key, _ in call.marks)
        m = len(call.groups[0][0]) if call.groups else 0
        args: list[Any] = [
            len(call.adds),
            len(call.groups),
            m,
            max(1, math.ceil(call.ttl_s * 1000)),
            call.min_sends,
            repr(call.threshold),
            "1" if call.block else "0",
            *(value for _, value in call.marks),
        ]
        answer = await self._backend.run_script(self._send, keys, args)
        values = [int(v) for v in answer]
        return values[0], [(values[i], values[i + 1]) for i in range(1, len(values), 2)]

    async def take_back(self, adds: Sequence[str], marks: Sequence[str]) -> None:
        await self._backend.run_script(self._take_back, [*adds, *marks], [len(adds)])

    async def redeem(self, mark: str, ttl_s: float) -> int:
        return int(await self._backend.run_script(self._redeem, [mark], [max(1, math.ceil(ttl_s * 1000))]))

    async def clear(self, keys: Sequence[str]) -> None:
        if keys:
            await self._backend.run_script(self._clear, list(keys), [])


def make_store(storage: StorageService, memory: MemoryConversionStore) -> ConversionStore:
    backend = storage.backend
    if isinstance(backend, RedisKeyValue):
        return RedisConversionStore(backend)
    return memory
