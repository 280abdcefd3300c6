"""The request path as a list of stages, compiled per route, run by one loop.

A stage is one concern in its owner's module (``identity/ip.py`` checks allowlists,
``proxy.py`` forwards, ...). Its contract is small:

- ``async run(exchange)``: pass (return None), answer now (return a response: an idempotent
  replay, a duplicate webhook), or refuse (raise ``GatewayError`` with a reason code);
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
from collections.abc import Sequence

from aiohttp import web

from gateway.core.errors import GatewayError, refuse
from gateway.core.exchange import Chain, Exchange, ResponsePhase, Stage, StageTimer

log = logging.getLogger("smsgw")

__all__ = [
    "Chain",
    "ResponsePhase",
    "Stage",
    "StageTimer",
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
    return refuse("internal_error", "the gateway failed")
