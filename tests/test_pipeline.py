"""The stage loop: stages that wait are awaited, stages that never wait are called plainly, and
every stage is timed and named the same either way."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

import gateway
from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.pipeline import Chain, StageTimer, SyncStage


class Waits:
    name = "waits"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def run(self, ex: Any) -> None:
        self.log.append(self.name)


class Plain(SyncStage):
    def __init__(
        self, name: str, log: list[str], answer: Any = None, error: GatewayError | None = None
    ) -> None:
        self.name = name
        self.log = log
        self.answer = answer
        self.error = error

    def run_sync(self, ex: Any) -> Any:
        self.log.append(self.name)
        if self.error is not None:
            raise self.error
        return self.answer


class PlainWithAfter(Plain):
    async def after(self, ex: Any, response: web.StreamResponse) -> None:
        pass


async def test_plain_and_waiting_stages_run_in_order_and_are_timed() -> None:
    log: list[str] = []
    last = PlainWithAfter("last", log)
    chain = Chain([Plain("first", log), Waits(log), last])
    timer, ran_after = StageTimer(), []
    assert await chain.run(SimpleNamespace(), timer, ran_after) is None
    assert log == ["first", "waits", "last"]
    assert timer.calls == {"first": 1, "waits": 1, "last": 1}
    assert chain.names == ("first", "waits", "last")
    assert ran_after == [last]


async def test_a_plain_stage_answers_and_refuses_as_an_awaited_one_does() -> None:
    log: list[str] = []
    answer = web.Response(status=200)
    chain = Chain([Plain("replay", log, answer=answer), Waits(log)])
    assert await chain.run(SimpleNamespace(), StageTimer(), []) is answer
    assert log == ["replay"]

    ex = SimpleNamespace(refused_by=None)
    timer = StageTimer()
    refusing = Chain([Plain("scope", log, error=refuse(Reason.FORBIDDEN, "no")), Waits(log)])
    with pytest.raises(GatewayError):
        await refusing.run(ex, timer, [])
    assert ex.refused_by == "scope"
    assert timer.calls == {"scope": 1}


class Sleeps:
    name = "sleeps"

    def __init__(self, seconds: float, during: Any = None) -> None:
        self.seconds = seconds
        self.during = during

    async def run(self, ex: Any) -> None:
        if self.during is not None:
            self.during()
        await asyncio.sleep(self.seconds)


async def test_each_stage_is_timed_for_its_own_time() -> None:
    timer = StageTimer()
    chain = Chain([Plain("first", []), Sleeps(0.05), Plain("last", [])])
    await chain.run(SimpleNamespace(), timer, [])
    assert 0.05 <= timer.seconds["sleeps"] < 1
    assert timer.seconds["first"] < 0.05 and timer.seconds["last"] < 0.05


async def test_a_drain_while_a_stage_waits_counts_the_rest_in_the_next_interval() -> None:
    """The metrics flush drains the timer at any moment: nothing observed after it is lost."""
    timer = StageTimer()
    drained: list[dict[str, int]] = []
    chain = Chain(
        [Plain("first", []), Sleeps(0, during=lambda: drained.append(timer.drain()[0])), Plain("last", [])]
    )
    await chain.run(SimpleNamespace(), timer, [])
    assert drained == [{"first": 1}]
    assert timer.calls == {"sleeps": 1, "last": 1}


async def test_a_plain_stage_can_still_be_awaited() -> None:
    """Callers that walk the stages themselves (smsgw explain) await ``run`` on every stage."""
    log: list[str] = []
    assert await Plain("p", log).run(SimpleNamespace()) is None
    assert log == ["p"]


def test_every_request_path_stage_that_never_waits_is_a_plain_call() -> None:
    """A coroutine per stage costs the stage loop a task step; a stage whose ``run`` awaits nothing
    is written as ``run_sync`` on a :class:`SyncStage`, so it is called plainly."""
    root = Path(gateway.__file__).parent
    coroutines_that_never_wait = []
    for path in sorted(root.rglob("*.py")):
        if path.parent.name == "commands" or path.name == "exchange.py":  # explain's stand-ins, the contract
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if isinstance(item, ast.AsyncFunctionDef) and item.name == "run":
                    waits = (ast.Await, ast.AsyncFor, ast.AsyncWith)
                    if not any(isinstance(inner, waits) for inner in ast.walk(item)):
                        coroutines_that_never_wait.append(f"{path.relative_to(root)}: {node.name}")
    assert coroutines_that_never_wait == []
