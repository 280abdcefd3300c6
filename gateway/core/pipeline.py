"""The request path as a list of stages, compiled per route, run by one loop.

A stage is one concern in its owner's module (``identity/ip.py`` checks allowlists,
``proxy.py`` forwards, ...). Its contract is small:

- ``async run(exchange)``: pass (return None), answer now (return a response: an idempotent
  replay, a duplicate webhook), or refuse (raise ``GatewayError`` with a reason code);
- a stage that never waits (no I/O: allowlists, scopes, header checks) may subclass
  :class:`SyncStage` and write ``run_sync(exchange)`` instead, with the same three outcomes: the
  loop calls it plainly, without a coroutine, and ``run`` still works for callers that await;
- optionally ``async after(exchange, response)``: called for every stage that ran, last first,
  once the answer is known (refusals included), for work on the response phase.

The loop times every stage (:class:`StageTimer`), so per-stage metrics and profiles have one
place to live. Which stages a route has is decided once, in ``gateway/server/policy.py``.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from aiohttp import web

from gateway.core.errors import GatewayError, refuse
from gateway.core.exchange import Exchange

log = logging.getLogger("smsgw")

__all__ = ["Chain", "ResponsePhase", "Stage", "StageTimer", "SyncStage", "describe_exception"]


class Stage(Protocol):
    name: str

    async def run(self, ex: Exchange) -> web.StreamResponse | None: ...


class SyncStage:
    """A stage that does no I/O: :meth:`Chain.run` calls :meth:`run_sync` plainly."""

    __slots__ = ()
    name: str

    def run_sync(self, ex: Exchange) -> web.StreamResponse | None:
        raise NotImplementedError

    async def run(self, ex: Exchange) -> web.StreamResponse | None:
        return self.run_sync(ex)


@runtime_checkable
class ResponsePhase(Protocol):
    """A stage that also acts once the answer is known."""

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None: ...


class StageTimer:
    """Per-stage call counts and total seconds since the last :meth:`drain`: the metrics service
    drains it (gateway/server/metrics.py), profiles print a snapshot. Two dict updates per stage."""

    __slots__ = ("calls", "seconds")

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def observe(self, stage: str, seconds: float) -> None:
        self.calls[stage] = self.calls.get(stage, 0) + 1
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {
            name: {"calls": self.calls[name], "seconds": round(self.seconds[name], 6)} for name in self.calls
        }

    def drain(self) -> tuple[dict[str, int], dict[str, float]]:
        """What was observed since the last drain, and start again from zero."""
        calls, seconds = self.calls, self.seconds
        self.calls, self.seconds = {}, {}
        return calls, seconds


class Chain:
    """An ordered, immutable list of stages; ``after`` hooks are found once, here."""

    __slots__ = ("_steps", "names", "stages")

    def __init__(self, stages: Iterable[Stage]) -> None:
        self.stages: tuple[tuple[Stage, bool], ...] = tuple(
            (stage, isinstance(stage, ResponsePhase)) for stage in stages
        )
        self.names: tuple[str, ...] = tuple(stage.name for stage, _ in self.stages)
        # (stage, its name, its run_sync or None, whether it has a response phase), found once.
        self._steps = tuple(
            (stage, stage.name, stage.run_sync if isinstance(stage, SyncStage) else None, has_after)
            for stage, has_after in self.stages
        )

    def __len__(self) -> int:
        return len(self.stages)

    async def run(self, ex: Exchange, timer: StageTimer, ran_after: list[Stage]) -> web.StreamResponse | None:
        """Run every stage in order until one answers; raises the first refusal."""
        perf = time.perf_counter
        observe = timer.observe
        for stage, name, run_sync, has_after in self._steps:
            if has_after:
                ran_after.append(stage)
            t0 = perf()
            try:
                response = run_sync(ex) if run_sync is not None else await stage.run(ex)
            except GatewayError:
                ex.refused_by = name
                raise
            finally:
                observe(name, perf() - t0)
            if response is not None:
                return response
        return None


async def run_after(ex: Exchange, stages: Sequence[Stage], response: web.StreamResponse) -> None:
    """Response-phase hooks, last stage first; a failing hook is logged and never changes the answer."""
    for stage in reversed(stages):
        try:
            await stage.after(ex, response)  # type: ignore[attr-defined]
        except Exception as exc:
            log.error("response phase of %s failed: %s", stage.name, describe_exception(exc))


def describe_exception(exc: BaseException) -> str:
    """Type and code location only: an exception's message can quote request bytes."""
    where = "".join(traceback.format_tb(exc.__traceback__)[-3:]).strip().replace("\n", " | ")
    return f"{type(exc).__name__} at {where}"


def internal_error() -> GatewayError:
    return refuse("internal_error", "the gateway failed")
