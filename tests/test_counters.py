"""gateway/storage/counters.py: the one-script count on a real Redis answers as the ``limits`` library
does, on the library's own keys, for every strategy."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from unittest.mock import patch

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage

from gateway.config.schema import StorageConfig
from gateway.limits.stage import STRATEGIES, gather, make_counters
from gateway.storage.counters import (
    Counted,
    Hit,
    LibraryCounters,
    MemoryCounters,
    ScriptCounters,
    sliding_figures,
)
from gateway.storage.hits import hit_key
from gateway.storage.service import StorageService, open_storage
from tests.conftest import RedisServer

KEY = b"k" * 32
NAMES = itertools.count()


@pytest.fixture
async def storage(redis_server: RedisServer) -> AsyncIterator[StorageService]:
    service = open_storage(StorageConfig(url=redis_server.url), KEY)
    yield service
    await service.close()


def hits(tag: str, *costs: int, rates: tuple[str, ...] = ("5/minute", "7/hour", "3/second")) -> list[Hit]:
    """Three limits of different periods, each hit with its cost."""
    items = [parse(rate) for rate in rates]
    return [
        Hit(type(i)(i.amount, i.multiples, namespace="t"), (tag,), c)
        for i, c in zip(items, costs, strict=True)
    ]


#: Periods no window can finish within the test's few round trips, however slow the machine: a
#: one-second window could move on between the script's count and the library's, at different
#: instants for the two keys (made a round trip apart), and the two would then disagree.
LONG_RATES = ("5/minute", "7/hour", "3/day")


def reset_agrees(strategy: str, ours: int, theirs: int, expiry: int) -> bool:
    """Our reset is the library's, to the second; except the one documented difference: a sliding
    window the library reads in the millisecond it was made (TTL exactly two periods) resets, by
    its reckoning, in 0 s, by ours in a whole period (see the last test of this file)."""
    if strategy == "sliding-window-counter" and theirs == 0:
        return ours == expiry
    return abs(ours - theirs) <= 1


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_one_script_answers_as_the_library_does(storage: StorageService, strategy: str) -> None:
    script = make_counters(storage, strategy)
    assert isinstance(script, ScriptCounters)
    library = LibraryCounters(STRATEGIES[strategy](storage.limiter), gather)
    mine, theirs = f"script-{next(NAMES)}", f"library-{next(NAMES)}"
    for costs in [(1, 1, 1), (2, 2, 1), (1, 1, 1), (2, 1, 4), (1, 1, 1), (1, 3, 1)]:
        by_script = (await script.count(hits(mine, *costs, rates=LONG_RATES))).tallies
        by_library = (await library.count(hits(theirs, *costs, rates=LONG_RATES))).tallies
        assert [t.allowed for t in by_script] == [t.allowed for t in by_library], costs
        figures = await library.figures(hits(theirs, *costs, rates=LONG_RATES))
        for hit, tally, (remaining, reset_s) in zip(
            hits(theirs, *costs, rates=LONG_RATES), by_script, figures, strict=True
        ):
            assert tally.figures is not None
            assert tally.figures[0] == remaining
            assert reset_agrees(strategy, tally.figures[1], reset_s, hit.item.get_expiry()), (
                costs,
                tally.figures,
                reset_s,
            )
        # the script counted on the library's keys: the library reads the same figures back
        again = await library.figures(hits(mine, *costs, rates=LONG_RATES))
        assert [f[0] for f in again] == [t.figures[0] for t in by_script if t.figures]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_the_script_writes_the_keys_the_installed_limits_writes(
    storage: StorageService, redis_server: RedisServer, strategy: str
) -> None:
    """counters.py copies a private part of ``limits``: the storage prefix, the sliding window's
    ``{key}`` and ``{key}/-1`` keys, the moving window's list of timestamps. The same hits through
    the script and through the installed ``limits`` leave the same keys, of the same types, values
    and lifetimes; a ``limits`` release that changed its layout fails here, not in production."""
    n = next(NAMES)
    mine, theirs = f"layout-script-{n}", f"layout-library-{n}"
    script = make_counters(storage, strategy)
    library = LibraryCounters(STRATEGIES[strategy](storage.limiter), gather)
    r = redis_server.client()
    for costs in [(1, 2, 1), (1, 1, 2)]:
        await script.count(hits(mine, *costs, rates=LONG_RATES))
        await library.count(hits(theirs, *costs, rates=LONG_RATES))
    if strategy == "sliding-window-counter":
        # a period passes for both (every TTL one period shorter): the next hit makes the current
        # window the previous one, under the previous window's key
        for tag in (mine, theirs):
            for hit in hits(tag, 1, 1, 1, rates=LONG_RATES):
                for key in [k for k in r.keys() if hit.item.key_for(tag).encode() in k]:
                    r.pexpire(key, r.pttl(key) - hit.item.get_expiry() * 1000)
        await script.count(hits(mine, 1, 1, 1, rates=LONG_RATES))
        await library.count(hits(theirs, 1, 1, 1, rates=LONG_RATES))
    dump = redis_server.dump()
    ours = {k.decode().replace(mine, theirs): v for k, v in dump.items() if mine.encode() in k}
    library_keys = {k.decode(): v for k, v in dump.items() if theirs.encode() in k}
    assert sorted(ours) == sorted(library_keys)
    assert len(ours) == (6 if strategy == "sliding-window-counter" else 3)  # previous + current
    assert all(k.startswith(storage.limiter_prefix + ":") for k in ours)
    for key, value in ours.items():
        theirs_value = library_keys[key]
        if strategy == "moving-window":  # timestamps: as many, each within the test's seconds
            assert len(value) == len(theirs_value)
            assert all(abs(float(a) - float(b)) < 30 for a, b in zip(value, theirs_value, strict=True))
        else:
            assert value == theirs_value, key
        ttl_ours, ttl_theirs = r.pttl(key.replace(theirs, mine)), r.pttl(key)
        assert ttl_ours > 0 and ttl_theirs > 0
        assert abs(ttl_ours - ttl_theirs) < 30_000, key


async def test_a_request_costs_one_round_trip(storage: StorageService) -> None:
    counters = make_counters(storage, "sliding-window-counter")
    await counters.count(hits("warm", 1, 1, 1))  # the first call loads the script
    before = storage.round_trips
    await counters.count(hits("warm", 1, 1, 1))
    assert storage.round_trips - before == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
async def test_memory_counters_answer_as_the_library_does(strategy: str) -> None:
    """The same hits, at the same instants, through limits' own memory storage and through ours.
    (limits' memory sliding window aligns its windows to the epoch, unlike its Redis one, which
    starts a window at its first hit; ours follows Redis: see the next test.)"""
    clock = Clock()
    ours = MemoryCounters(strategy, clock)
    theirs = LibraryCounters(STRATEGIES[strategy](MemoryStorage()), gather)
    steps = [(1, 1, 1), (2, 2, 1), (1, 1, 1), (2, 1, 4), (1, 1, 1), (1, 3, 1), (3, 1, 1), (1, 1, 1)]
    # no instant falls exactly on a period's edge, where limits' own backends disagree (>= or >)
    waits = [0.0, 0.41, 0.73, 1.37, 12.11, 0.23, 30.57, 61.03, 0.17, 59.93, 0.31, 3601.07]
    with patch("time.time", clock):
        for wait, costs in zip(waits, itertools.cycle(steps)):
            clock.now += wait
            mine = (await ours.count(hits("x", *costs))).tallies
            library = (await theirs.count(hits("x", *costs))).tallies
            assert [t.allowed for t in mine] == [t.allowed for t in library], (wait, costs)
            figures = await theirs.figures(hits("x", *costs))
            for tally, (remaining, reset_s) in zip(mine, figures, strict=True):
                assert tally.figures is not None
                assert tally.figures[0] == remaining, (wait, costs)
                assert abs(tally.figures[1] - reset_s) <= 1 or reset_s == 0, (wait, costs)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_memory_counters_answer_as_the_redis_script_does(
    storage: StorageService, strategy: str
) -> None:
    """Memory storage and Redis give a client the same answers and figures."""
    script, ours = make_counters(storage, strategy), MemoryCounters(strategy)
    tag = f"same-{next(NAMES)}"
    for round_ in range(2):
        if round_:
            await asyncio.sleep(1.2)  # the one-second limit's window moves on
        for costs in [(1, 1, 1), (2, 2, 1), (1, 1, 1), (2, 1, 4), (1, 1, 1), (1, 3, 1)]:
            by_script = (await script.count(hits(tag, *costs))).tallies
            by_memory = (await ours.count(hits(tag, *costs))).tallies
            assert [t.allowed for t in by_memory] == [t.allowed for t in by_script], (round_, costs)
            for mine, theirs in zip(by_memory, by_script, strict=True):
                assert mine.figures is not None and theirs.figures is not None
                assert mine.figures[0] == theirs.figures[0], (round_, costs)
                assert abs(mine.figures[1] - theirs.figures[1]) <= 1, (round_, costs)


async def test_memory_counters_forget_expired_keys() -> None:
    clock = Clock()
    ours = MemoryCounters("fixed-window", clock)
    for n in range(5000):
        await ours.count(hits(f"number-{n}", 1, 1, 1))
    clock.now += 3601  # every period over: the next sweep (a minute on) drops them all
    await ours.count(hits("late", 1, 1, 1))
    assert len(ours._values) <= 3  # the late one's three limits only


def test_memory_storage_counts_in_this_process() -> None:
    memory = open_storage(StorageConfig(url="memory://"), KEY)
    assert isinstance(make_counters(memory, "fixed-window"), MemoryCounters)
    assert make_counters(memory, "fixed-window") is make_counters(memory, "fixed-window")  # shared


def test_a_window_read_in_the_millisecond_it_was_made_resets_after_a_period() -> None:
    # limits computes current_ttl % expiry, 0 when the TTL is exactly two periods: a client
    # told "RateLimit-Reset: 0" retries at once and is refused again.
    assert sliding_figures(5, 60, 0, 0.0, 1, 120.0) == (4, 60)
    assert sliding_figures(5, 60, 0, 0.0, 1, 90.5) == (4, 31)
    assert sliding_figures(5, 60, 2, 40.0, 1, 90.0) == (3, 10)
    assert sliding_figures(5, 60, 0, 0.0, 0, 0.0) == (5, 0)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_a_refused_request_counts_against_no_limit(storage: StorageService, strategy: str) -> None:
    """Check all, then count all: one limit refusing leaves every counter of the request as it was."""

    def hits(tag: str, *costs: int) -> list[Hit]:  # periods long enough for no window to move
        items = [parse("5/hour"), parse("7/day"), parse("3/hour")]
        return [Hit(i, (tag,), c) for i, c in zip(items, costs, strict=True)]

    for counters in (make_counters(storage, strategy), MemoryCounters(strategy)):
        tag = f"refused-{next(NAMES)}"
        first = await counters.count(hits(tag, 1, 1, 1))
        assert first.counted and [t.figures[0] for t in first.tallies if t.figures] == [4, 6, 2]
        for _ in range(3):  # 4 on a 3/hour limit: refused, whatever the others allow
            refused = await counters.count(hits(tag, 1, 1, 4))
            assert not refused.counted
            assert [t.allowed for t in refused.tallies] == [True, True, False]
            assert [t.figures[0] for t in refused.tallies if t.figures] == [4, 6, 2]
        again = await counters.count(hits(tag, 1, 1, 1))
        assert again.counted and [t.figures[0] for t in again.tallies if t.figures] == [3, 5, 1]


async def test_requests_of_one_loop_iteration_share_one_round_trip(storage: StorageService) -> None:
    """Auto-pipelining: ten requests counted at once cost one round trip, and each gets the answer
    it gets when the ten go one after another (counted or not, the same remaining figures)."""
    counters = make_counters(storage, "fixed-window")
    alone, together = f"alone{next(NAMES)}", f"together{next(NAMES)}"
    await counters.count(hits(alone, 1, 1, 1, rates=LONG_RATES))  # the first call loads the script
    one_by_one = [await counters.count(hits(alone, 1, 1, 1, rates=LONG_RATES)) for _ in range(10)]
    await counters.count(hits(together, 1, 1, 1, rates=LONG_RATES))
    before = storage.round_trips
    at_once = await asyncio.gather(
        *(counters.count(hits(together, 1, 1, 1, rates=LONG_RATES)) for _ in range(10))
    )
    assert storage.round_trips - before == 1

    def seen(answers: list[Counted]) -> list[tuple[bool, list[int]]]:
        return [(a.counted, [t.figures[0] for t in a.tallies]) for a in answers]

    assert seen(at_once) == seen(one_by_one)
    assert [a.counted for a in at_once] == [True, True] + [False] * 8  # 3/day: 2 left after the first


async def test_a_pipeline_reloads_a_script_redis_forgot(
    storage: StorageService, redis_server: RedisServer
) -> None:
    counters = make_counters(storage, "sliding-window-counter")
    tag = f"flush{next(NAMES)}"
    await counters.count(hits(tag, 1, 1, 1, rates=LONG_RATES))
    redis_server.client().script_flush()
    answers = await asyncio.gather(*(counters.count(hits(tag, 1, 1, 1, rates=LONG_RATES)) for _ in range(3)))
    assert [a.counted for a in answers] == [True, True, False]  # 3/day: 2 left after the first
    assert [a.tallies[0].figures[0] for a in answers] == [3, 2, 2]  # 5/minute


async def test_a_storage_outage_reaches_every_request_of_a_pipeline(storage: StorageService) -> None:
    from gateway.storage.service import StorageUnavailable

    counters = make_counters(storage, "fixed-window")
    tag = f"down{next(NAMES)}"
    await counters.count(hits(tag, 1, rates=LONG_RATES[:1]))
    with patch("redis.asyncio.client.Pipeline.execute", side_effect=ConnectionError("down")):
        answers = await asyncio.gather(
            *(counters.count(hits(tag, 1, rates=LONG_RATES[:1])) for _ in range(3)), return_exceptions=True
        )
    assert all(isinstance(a, StorageUnavailable) for a in answers)


@pytest.mark.parametrize("rate", ["5/second", "7/minute", "3 per 2 hours", "10/day", "1/month", "2/year"])
def test_memory_keys_are_the_library_keys(rate: str) -> None:
    """Memory counters name a limit's counter as the ``limits`` library does (the Redis keys)."""
    from limits import RateLimitItemPerMinute

    item = type(parse(rate))(parse(rate).amount, parse(rate).multiples, namespace="client")
    hit = Hit(item, ("s", "billing", "0f" * 16), 1)
    assert hit_key(hit) == item.key_for(*hit.identifiers)
    plain = Hit(RateLimitItemPerMinute(3), ("f", "route"), 2)
    assert hit_key(plain) == plain.item.key_for("f", "route")
