"""The services a gateway serves with (gateway/server/services.py): all there from the start, frozen,
closed last-opened-first when the block ends or when opening fails half-way; and the metric
families each feature owns (gateway/*/metrics.py), exported under the documented names."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.callbacks.forward import CallbackForwarder
from gateway.config import Config, parse_listen
from gateway.server.config import load_config
from gateway.server.services import open_services
from tests.conftest import VENDOR_TOKEN, GatewayFactory, Vendor, basic, write_config
from tests.test_metrics import scrape

ROOT = Path(__file__).resolve().parent.parent


def audit_events(config: Config) -> list[str]:
    path = config.resolve_path(config.settings.logging.audit_log)
    return [json.loads(line)["event"] for line in path.read_text().splitlines()]


async def test_open_services_yields_frozen_services_and_closes_them(
    tmp_path: Path, pki: dict[str, Path], vendor: Vendor
) -> None:
    config = load_config(write_config(tmp_path, pki, vendor.base_url))
    async with open_services(config) as services:
        assert services.ready  # the vendor pool is open
        assert services.connections.total == 0
        assert services.config is config
        assert services.https_port == parse_listen(config.settings.server.listen)[1]
        assert VENDOR_TOKEN not in repr(services) + repr(services.switched)
        with pytest.raises(dataclasses.FrozenInstanceError):
            services.audit = None  # type: ignore[misc]
        events = audit_events(config)
        assert events[0] == "config_loaded" and "gateway_stopped" not in events
    assert not services.ready  # the vendor pool is closed
    assert audit_events(config)[-1] == "gateway_stopped"


async def test_a_failure_while_opening_closes_what_was_opened(
    tmp_path: Path, pki: dict[str, Path], vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage, the vendor pool and the logs were open when the callbacks' session failed."""
    config = load_config(write_config(tmp_path, pki, vendor.base_url))

    async def fail(self: CallbackForwarder) -> None:
        raise RuntimeError("no session")

    monkeypatch.setattr(CallbackForwarder, "start", fail)
    opened = []
    with pytest.raises(RuntimeError, match="no session"):
        async with open_services(config) as services:
            opened.append(services)
    assert opened == []
    events = audit_events(config)
    assert events[0] == "config_loaded" and events[-1] == "gateway_stopped"


#: Every family in docs/operations.md's table, as today's dashboards and alert rules name them.
def documented_families() -> set[str]:
    table = (ROOT / "docs" / "operations.md").read_text().split("## Metrics", 1)[1].split("\n\n")
    rows = next(part for part in table if part.startswith("| metric |"))
    return set(re.findall(r"^\| `(smsgw_[a-z_]+)` \|", rows, re.MULTILINE))


async def test_every_documented_family_is_exported(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    gw = await make_gateway(vendor.base_url)
    assert (await gw.send()).status == 201
    assert (await gw.send(auth=basic("nobody", "wrong"))).status == 401
    _, text = await scrape(gw.admin)
    exported = set()
    for family in text_string_to_metric_families(text):
        exported.add(family.name + ("_total" if family.type == "counter" else ""))
    documented = documented_families()
    assert len(documented) == 17, documented
    smsgw = {name for name in exported if name.startswith("smsgw_")}
    assert smsgw == documented


def test_feature_metrics_read_only_public_fields() -> None:
    """A feature's metrics read their own service through its public counts, never another
    object's private fields (so a service can change its insides without breaking a metric)."""
    modules = [p for p in (ROOT / "gateway").glob("*/metrics.py") if p.parent.name != "server"]
    assert {p.parent.name for p in modules} >= {"alerts", "audit", "core", "identity", "storage", "transport"}
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            private = isinstance(node, ast.Attribute) and re.match(r"_[^_]", node.attr)
            if private:
                owner = node.value
                assert isinstance(owner, ast.Name) and owner.id == "self", f"{path}:{node.lineno}"
