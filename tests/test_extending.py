"""docs/extending.md: the worked example (a stage with a route option) builds and works as shown.

The code is taken from the page itself (the option's lines, the feature module, the policy line)
and run here: that is what the ``exec`` and ``eval`` below are for.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.config.schema import RouteConfig
from gateway.core.errors import GatewayError
from gateway.core.exchange import Exchange
from gateway.core.pipeline import NamedFactory, compile_stages
from gateway.core.values import Message
from gateway.server import policy
from tests import test_layers

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def block(lang: str, containing: str) -> str:
    found = [text for kind, text in FENCE.findall(DOC.read_text(encoding="utf-8")) if kind == lang]
    matches = [text for text in found if containing in text]
    assert len(matches) == 1, f"docs/extending.md: one {lang} block with {containing!r}"
    return matches[0]


def added(diff: str) -> list[str]:
    return [line[1:] for line in diff.splitlines() if line.startswith("+")]


@pytest.fixture
def fanout() -> Iterator[types.ModuleType]:
    """The page's feature module, as ``gateway.fanout``."""
    module = types.ModuleType("gateway.fanout")
    module.__file__ = "gateway/fanout/__init__.py"
    sys.modules["gateway.fanout"] = module
    try:
        exec(compile(block("python", "class CapRecipients"), module.__file__, "exec"), module.__dict__)  # noqa: S102
        yield module
    finally:
        del sys.modules["gateway.fanout"]


@pytest.fixture
def route_model() -> type[RouteConfig]:
    """RouteConfig with the page's option added."""
    lines = added(block("diff", "class RouteConfig"))
    namespace: dict[str, Any] = {"RouteConfig": RouteConfig}
    exec("class ExampleRoute(RouteConfig):\n" + "\n".join(lines), namespace)  # noqa: S102
    return namespace["ExampleRoute"]


@pytest.fixture
def entry(fanout: types.ModuleType) -> NamedFactory[Any, Any]:
    """The page's line in the policy's SEND list."""
    lines = [line.strip() for line in added(block("diff", 'stage("recipients"'))]
    assert "from gateway import fanout" in lines
    (line,) = [line for line in lines if line.startswith("stage(")]
    return eval(line.rstrip(","), {"stage": policy.stage, "fanout": fanout})  # noqa: S307


def exchange(recipients: int) -> Exchange:
    ex = Exchange(make_mocked_request("POST", "/v1/messages"), types.SimpleNamespace(), "t", 0.0, "POST", "/")
    ex.message = Message(recipients=tuple(f"+4479460{n:05d}" for n in range(recipients)))
    return ex


def test_the_stage_goes_right_after_the_recipients(entry: NamedFactory[Any, Any]) -> None:
    names = [factory.name for factory in policy.SEND]
    at = names.index("recipients") + 1
    example = [*policy.SEND[:at], entry, *policy.SEND[at:]]
    assert [factory.name for factory in example] == [*names[:at], "max_recipients", *names[at:]]


async def test_the_option_configures_the_stage(
    entry: NamedFactory[Any, Any], route_model: type[RouteConfig]
) -> None:
    capped = route_model(name="send", path="/v1/messages", auth=("basic",), max_recipients=2)
    chain = compile_stages([entry], capped, object())
    assert chain.names == ("max_recipients",)
    assert await chain.stages[0][0].run(exchange(2)) is None
    with pytest.raises(GatewayError) as refused:
        await chain.stages[0][0].run(exchange(3))
    assert (refused.value.status, refused.value.code) == (400, "bad_request")
    assert "at most 2 recipients" in str(refused.value.message)
    # a route without the option has no such stage
    assert (
        len(compile_stages([entry], route_model(name="send", path="/v1/messages", auth=("basic",)), object()))
        == 0
    )


def test_the_feature_respects_the_layers(fanout: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_layers, "FEATURES", (*test_layers.FEATURES, "fanout"))
    sources = {**test_layers.gateway_sources(), "gateway.fanout": block("python", "class CapRecipients")}
    upward = test_layers.upward_imports(sources)
    assert not [arrow for arrow in upward if arrow.startswith("gateway.fanout ")]


# ============================================================================================
# the contract the example relies on
# ============================================================================================


def test_the_policy_lists_the_stages_in_their_documented_order() -> None:
    """Metrics, traces and docs/request-path.md name the stages; the lists only order them."""
    assert [f.name for f in policy.SEND] == [
        "route_ip_allow",
        "auth_failures",
        "read_body",  # when an authenticator needs the body (RFC 9421 Content-Digest)
        "authenticate",
        "client_ip_allow",
        "scopes",
        "read_body",  # otherwise
        "message",
        "fields",
        "message_nul",
        "recipients",
        "hop_headers",
        "idempotency",
        "limits",
        "anomalies",
        "conversion",
        "audit",
        "forward",
    ]
    assert [f.name for f in policy.WEBHOOK] == [
        "route_ip_allow",
        "read_body",
        "verify_signature",
        "read_callback",
        "duplicates",
        "audit",
        "forward",
    ]


def test_a_factory_must_build_the_stage_it_is_named_for(
    fanout: types.ModuleType, route_model: type[RouteConfig]
) -> None:
    misnamed = NamedFactory("recipient_cap", fanout.cap_recipients)
    route = route_model(name="send", path="/v1/messages", auth=("basic",), max_recipients=2)
    with pytest.raises(ValueError, match="'recipient_cap' built a stage named 'max_recipients'"):
        compile_stages([misnamed], route, object())
