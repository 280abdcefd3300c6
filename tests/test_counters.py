"""gateway/counters.py: the one-script count on a real Redis answers as the ``limits`` library
does, on the library's own keys, for every strategy."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from limits import parse

from gateway.config.schema import StorageConfig
from gateway.counters import Hit, LibraryCounters, ScriptCounters, sliding_figures
from gateway.limits import STRATEGIES, gather, make_counters
from gateway.storage import StorageService, open_storage
from tests.conftest import RedisServer

KEY = b"k" * 32
NAMES = itertools.count()


@pytest.fixture
async def storage(redis_server: RedisServer) -> AsyncIterator[StorageService]:
    service = open_storage(StorageConfig(url=redis_server.url), KEY)
    yield service
    await service.close()


def hits(tag: str, *costs: int) -> list[Hit]:
    """Three limits of different periods, each hit with its cost."""
    items = [parse("5/minute"), parse("7/hour"), parse("3/second")]
    return [
        Hit(type(i)(i.amount, i.multiples, namespace="t"), (tag,), c)
        for i, c in zip(items, costs, strict=True)
    ]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_one_script_answers_as_the_library_does(storage: StorageService, strategy: str) -> None:
    script = make_counters(storage, strategy)
    assert isinstance(script, ScriptCounters)
    library = LibraryCounters(STRATEGIES[strategy](storage.limiter), gather)
    mine, theirs = f"script-{next(NAMES)}", f"library-{next(NAMES)}"
    for costs in [(1, 1, 1), (2, 2, 1), (1, 1, 1), (2, 1, 4), (1, 1, 1), (1, 3, 1)]:
        by_script = await script.count(hits(mine, *costs))
        by_library = await library.count(hits(theirs, *costs))
        assert [t.allowed for t in by_script] == [t.allowed for t in by_library], costs
        figures = await library.figures(hits(theirs, *costs))
        for tally, (remaining, reset_s) in zip(by_script, figures, strict=True):
            assert tally.figures is not None
            assert tally.figures[0] == remaining
            assert abs(tally.figures[1] - reset_s) <= 1
        # the script counted on the library's keys: the library reads the same figures back
        again = await library.figures(hits(mine, *costs))
        assert [f[0] for f in again] == [t.figures[0] for t in by_script if t.figures]


async def test_a_request_costs_one_round_trip(storage: StorageService) -> None:
    counters = make_counters(storage, "sliding-window-counter")
    await counters.count(hits("warm", 1, 1, 1))  # the first call loads the script
    before = storage.round_trips
    await counters.count(hits("warm", 1, 1, 1))
    assert storage.round_trips - before == 1


def test_memory_storage_counts_with_the_library() -> None:
    memory = open_storage(StorageConfig(url="memory://"), KEY)
    assert isinstance(make_counters(memory, "fixed-window"), LibraryCounters)


def test_a_window_read_in_the_millisecond_it_was_made_resets_after_a_period() -> None:
    # limits computes current_ttl % expiry, 0 when the TTL is exactly two periods: a client
    # told "RateLimit-Reset: 0" retries at once and is refused again.
    assert sliding_figures(5, 60, 0, 0.0, 1, 120.0) == (4, 60)
    assert sliding_figures(5, 60, 0, 0.0, 1, 90.5) == (4, 31)
    assert sliding_figures(5, 60, 2, 40.0, 1, 90.0) == (3, 10)
    assert sliding_figures(5, 60, 0, 0.0, 0, 0.0) == (5, 0)
