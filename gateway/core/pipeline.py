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

The contract and :class:`Chain` are defined next to the exchange (gateway/core/exchange.py),
since a route on the exchange holds its chain; this module re-exports them with the loop's
helpers. The loop times every stage (:class:`StageTimer`), so per-stage metrics and profiles have
one place to live. Which stages a route has is decided once, in ``gateway/server/policy.py``, from
a list of named factories (:class:`NamedFactory`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from aiohttp import web

from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.exchange import Chain, Exchange, Stage, StageTimer, SyncStage

if TYPE_CHECKING:
    from gateway.core.redaction import Redactor

log = logging.getLogger("smsgw")

__all__ = [
    "BuildContext",
    "Chain",
    "NamedFactory",
    "Stage",
    "StageFactory",
    "StageTimer",
    "SyncStage",
    "compile_stages",
    "describe_exception",
    "internal_error",
    "run_after",
]


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
    return refuse(Reason.INTERNAL_ERROR, "the gateway failed")


# --------------------------------------------------------------------------- building chains

RouteT = TypeVar("RouteT")
BuildT = TypeVar("BuildT")
RouteIn = TypeVar("RouteIn", contravariant=True)
BuildIn = TypeVar("BuildIn", contravariant=True)


class BuildContext(Protocol):
    """What every stage factory may count on while a policy is compiled.

    Core names only what core defines; a feature declares the rest it needs as its own protocol
    (``gateway.limits.context.LimitsBuild``: the config and the storage), and the server's build
    context satisfies each of them structurally, so no feature imports the server.
    """

    @property
    def redactor(self) -> Redactor: ...


class StageFactory(Protocol[RouteIn, BuildIn]):
    """Builds one route's stage when a policy is compiled, or None when the route does not need it
    (so a route pays only for the stages it has)."""

    def __call__(self, route: RouteIn, build: BuildIn, /) -> Stage | None: ...


@dataclass(frozen=True, slots=True)
class NamedFactory(Generic[RouteT, BuildT]):
    """One entry of a route kind's stage list: the name of the stage it builds, and the factory
    the stage's feature owns. The policy only orders these; the names make the list readable and
    are checked against what the factories build."""

    name: str
    build: StageFactory[RouteT, BuildT]


def compile_stages(factories: Iterable[NamedFactory[RouteT, BuildT]], route: RouteT, build: BuildT) -> Chain:
    """The route's chain: every factory in order, skipping those that return None."""
    stages: list[Stage] = []
    for factory in factories:
        stage = factory.build(route, build)
        if stage is None:
            continue
        if stage.name != factory.name:
            raise ValueError(f"stage factory {factory.name!r} built a stage named {stage.name!r}")
        stages.append(stage)
    return Chain(stages)
