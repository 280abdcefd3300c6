"""Prometheus metrics, served on the admin listener at ``/metrics`` (prometheus-client).

The request path pays a few dictionary updates, nothing more: :meth:`Metrics.request` (called by
``Gateway.finish``) and the stage timer (called by the stage loop for every stage) add to plain
dicts, and :meth:`Metrics.flush` moves those sums into prometheus-client's metrics off the request
path: before every scrape, and every :data:`FLUSH_INTERVAL_S` in a worker process. Each feature
owns its families (``gateway/storage/metrics.py``, ``identity/metrics.py``, ``audit/metrics.py``,
``transport/metrics.py``, ``alerts/metrics.py``) and registers them here; counts that long-lived
services keep anyway are read at flush time, so they cost the request path nothing at all.

With ``server.workers > 1`` the values live in prometheus-client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, a private directory the supervisor makes and cleans; see
:func:`prepare_multiprocess_dir`). Every worker serves the admin listener (``SO_REUSEPORT``), and
each scrape reads every worker's files, so any worker answers with the sum over all of them (a
worker's counts since its last flush, at most a second old, are the only thing another worker's
answer can miss).

Labels are bounded: route and client names come from the config, statuses are HTTP status codes,
reasons come from ``errors.REASONS``, stage and rule names from the code. No label ever holds a
phone number, an address, a credential or request text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import tempfile
from bisect import bisect_left
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    Summary,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

from gateway.core.metrics import MetricSource
from gateway.core.pipeline import StageTimer
from gateway.core.tasks import stop_task

if TYPE_CHECKING:
    from gateway.core.exchange import Exchange

log = logging.getLogger("smsgw")

# A ``*_created`` series beside every counter doubles what a scrape carries and what a dashboard
# can trip on; the start time is ``process_start_time_seconds``.
disable_created_metrics()

__all__ = [
    "CONTENT_TYPE",
    "FLUSH_INTERVAL_S",
    "Metrics",
    "enable_multiprocess",
    "prepare_multiprocess_dir",
]

#: The classic text format (what ``generate_latest`` writes; every Prometheus version reads it).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: A worker moves its sums into the shared files this often.
FLUSH_INTERVAL_S: Final = 1.0
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

#: Upper bounds (seconds) of the latency histograms' buckets; +Inf is added.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Reasons that mean the vendor (or the internal service) gave no answer.
_NO_ANSWER: Final = {"upstream_unavailable": "unavailable", "upstream_timeout": "timeout"}


class _Sums:
    """One histogram's observations since the last flush: a count per bucket (the last one is
    +Inf) and their total."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0.0


class RequestMetrics:
    """Answered requests and their vendor calls: summed in plain dicts on the request path,
    moved into the exported families at flush."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self._requests_total = Counter(
            "smsgw_requests",
            "Requests answered, by route, client, decision and HTTP status",
            ["route", "client", "decision", "status"],
            registry=r,
        )
        self._refusals_total = Counter(
            "smsgw_refusals", "Gateway-made error answers, by reason code", ["reason"], registry=r
        )
        self._duration = Histogram(
            "smsgw_request_duration_seconds",
            "Whole request, arrival to answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._upstream_duration = Histogram(
            "smsgw_upstream_duration_seconds",
            "The vendor call (the internal service's for webhook routes), by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._upstream_total = Counter(
            "smsgw_upstream_responses",
            "Vendor answers by route and HTTP status ('unavailable' or 'timeout' when none came)",
            ["route", "status"],
            registry=r,
        )
        self._buckets = len(LATENCY_BUCKETS) + 1
        self._requests: dict[tuple[str, str, str, int], int] = {}
        self._refusals: dict[str, int] = {}
        self._durations: dict[str, _Sums] = {}
        self._upstream: dict[str, _Sums] = {}
        self._answers: dict[tuple[str, str | int], int] = {}

    def request(self, ex: Exchange, status: int, seconds: float) -> None:
        """One answered request (``Gateway.finish``): a handful of dict updates."""
        route = ex.route.name if ex.route is not None else ""
        key = (route, ex.client.id if ex.client is not None else "", ex.decision or "deny", status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        reason = ex.reason
        if reason is not None:
            self._refusals[reason] = self._refusals.get(reason, 0) + 1
        sums = self._durations.get(route)
        if sums is None:
            sums = self._durations[route] = _Sums(self._buckets)
        sums.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        sums.total += seconds
        if ex.upstream_ms is not None:
            upstream_s = ex.upstream_ms / 1000
            sums = self._upstream.get(route)
            if sums is None:
                sums = self._upstream[route] = _Sums(self._buckets)
            sums.counts[bisect_left(LATENCY_BUCKETS, upstream_s)] += 1
            sums.total += upstream_s
            answer = (route, _NO_ANSWER.get(reason, status) if reason is not None else status)
            self._answers[answer] = self._answers.get(answer, 0) + 1

    def flush(self) -> None:
        requests, self._requests = self._requests, {}
        for (route, client, decision, status), n in requests.items():
            self._requests_total.labels(route, client, decision, str(status)).inc(n)
        refusals, self._refusals = self._refusals, {}
        for reason, n in refusals.items():
            self._refusals_total.labels(reason).inc(n)
        answers, self._answers = self._answers, {}
        for (route, answer), n in answers.items():
            self._upstream_total.labels(route, str(answer)).inc(n)
        durations, self._durations = self._durations, {}
        upstream, self._upstream = self._upstream, {}
        # Histograms take batched sums through their children's values (the public API observes
        # one value at a time); the suite scrapes them after real traffic.
        for histogram, table in ((self._duration, durations), (self._upstream_duration, upstream)):
            for route, sums in table.items():
                child: Any = histogram.labels(route)
                child._sum.inc(sums.total)
                for i, n in enumerate(sums.counts):
                    if n:
                        child._buckets[i].inc(n)


class Metrics:
    """The gateway's metrics; one per process, a member of :class:`~gateway.server.services.Services`.

    It owns the registry, the request path's families, the stage timer and the config's; each
    feature registers its own families (:meth:`add`), which every flush brings up to date."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        #: Where features register their families.
        self.registry = r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, open fds, start time
        r.register(PLATFORM_COLLECTOR)  # python_info
        Gauge(
            "smsgw_build_info",
            "Always 1; the labels say which smsgw runs, on which Python and aiohttp",
            ["version", "python", "aiohttp"],
            registry=r,
            multiprocess_mode="max",
        ).labels(*_build_labels()).set(1)
        self._requests = RequestMetrics(r)
        #: ``Gateway.finish`` calls it for every answer: the request path's only metrics call.
        self.request = self._requests.request
        self._stage = Summary(
            "smsgw_stage_duration_seconds",
            "Time spent in each stage of the request path",
            ["stage"],
            registry=r,
        )
        self._generation = Gauge(
            "smsgw_config_generation",
            "Config loads since start: 1, then one more per accepted reload (with several workers: "
            "the oldest any worker serves)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self._reloads = Counter(
            "smsgw_config_reloads", "Reload attempts by result (ok, refused)", ["result"], registry=r
        )
        #: The stage loop's timer (``Chain.run`` calls ``observe``); drained at flush.
        self.stages = StageTimer()
        self._sources: list[MetricSource] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, *sources: MetricSource) -> None:
        """Features' families (registered into :attr:`registry`), flushed with the rest."""
        self._sources.extend(sources)

    # -- rare events, counted at once ------------------------------------------------------

    def config_loaded(self, generation: int) -> None:
        self._generation.set(generation)

    def reload(self, ok: bool) -> None:
        self._reloads.labels("ok" if ok else "refused").inc()

    # -- flushing and serving --------------------------------------------------------------

    def start(self) -> None:
        if self.multiprocess_dir is not None:
            self._task = asyncio.get_running_loop().create_task(self._flush_loop(), name="smsgw-metrics")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                self.flush()
            except Exception as exc:  # a metric must never stop the gateway
                log.error("metrics flush failed (%s)", type(exc).__name__)

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        self.flush()

    def flush(self) -> None:
        """Move what the request path summed, and what the features count, into the exported metrics."""
        self._requests.flush()
        calls, seconds = self.stages.drain()
        for name, n in calls.items():
            summary: Any = self._stage.labels(name)
            summary._count.inc(n)
            summary._sum.inc(seconds[name])
        for source in self._sources:
            source.flush()

    def exposition(self) -> bytes:
        """The text format for a scrape (call :meth:`flush` first). With several workers this
        reads every worker's files: run it off the event loop."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        ProcessCollector(registry=registry)  # the answering worker's process
        registry.register(PLATFORM_COLLECTOR)
        return generate_latest(registry)


def _build_labels() -> tuple[str, str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        smsgw = version("smsgw")
    except PackageNotFoundError:
        smsgw = "unknown"
    return smsgw, platform.python_version(), version("aiohttp")


# --------------------------------------------------------------------------- several workers


def prepare_multiprocess_dir() -> tuple[Path, bool]:
    """The directory the workers' metric files go to, empty and private (0700): the operator's
    ``PROMETHEUS_MULTIPROC_DIR`` (emptied of metric files; it must belong to this user), else a
    new temporary directory. Returns it and whether it was made here (then it is removed at exit).
    """
    given = os.environ.get(MULTIPROC_ENV)
    if not given:
        return Path(tempfile.mkdtemp(prefix="smsgw-metrics-")), True
    path = Path(given)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise OSError(f"{MULTIPROC_ENV} ({path}) is not a directory of this user")
    os.chmod(path, 0o700)
    for old in path.glob("*.db"):
        old.unlink()
    return path, False


def enable_multiprocess(path: Path) -> None:
    """Before the workers fork: their metrics go to files under ``path``. prometheus-client
    picks its value class when it is imported, so it is picked again here."""
    os.environ[MULTIPROC_ENV] = str(path)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[misc]


def worker_gone(path: Path, pid: int) -> None:
    """A worker exited: its live gauges stop counting (its counters stay in the sums)."""
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, str(path))


def remove_multiprocess_dir(path: Path, made_here: bool) -> None:
    if made_here:
        shutil.rmtree(path, ignore_errors=True)
    else:
        for old in path.glob("*.db"):
            with contextlib.suppress(OSError):
                old.unlink()
