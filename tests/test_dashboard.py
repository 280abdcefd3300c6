"""The operator's view: the Grafana dashboard in deploy/ queries only metrics the gateway really
exports (read from a live ``/metrics`` after real traffic), the build and process metrics are
there, no ``_created`` series is, and ``logging.format = "json"`` makes the operational log JSON
lines that carry the request id."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GatewayFactory, Vendor, basic
from tests.test_metrics import scrape

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "smsgw.json"
#: PromQL words that look like metric names but are not.
_NOT_METRICS = frozenset({"sum", "rate", "increase", "histogram_quantile", "max", "min", "count", "by", "le"})


def exported(text: str) -> set[str]:
    """Every series name a scrape can hold: families with no sample yet count (their ``# TYPE``)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count"),
        }
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def queried(dashboard: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}", "", target["expr"])  # label matchers
            expr = re.sub(r"\[[^]]*\]", "", expr)  # ranges
            names.update(w for w in re.findall(r"[a-z_][a-z0-9_]*", expr) if w not in _NOT_METRICS)
    return {n for n in names if n.startswith(("smsgw_", "process_", "python_"))}


async def test_every_dashboard_query_names_an_exported_metric(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    gw = await make_gateway(vendor.base_url)
    assert (await gw.send()).status == 201
    assert (await gw.send(auth=basic("nobody", "wrong"))).status == 401
    response, text = await scrape(gw.admin)
    assert response.status == 200
    names = exported(text)
    wanted = queried(dashboard)
    assert len(wanted) >= 15
    assert wanted <= names, (
        f"the dashboard queries metrics the gateway does not export: {sorted(wanted - names)}"
    )
    # build and process metrics, and no _created series
    assert "smsgw_build_info" in names and "process_resident_memory_bytes" in names
    assert not [n for n in names if n.endswith("_created")]
    build = [line for line in text.splitlines() if line.startswith("smsgw_build_info{")]
    assert len(build) == 1 and f'python="{sys.version.split()[0]}"' in build[0] and build[0].endswith(" 1.0")


async def test_json_operational_log_carries_the_request_id(
    make_gateway: GatewayFactory, vendor: Vendor, capfd: Any
) -> None:
    """A warning raised while a request is handled names that request, in a JSON line."""
    from gateway.core.oplog import configure

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure("info", "json")
    try:
        await _json_log(make_gateway, vendor, capfd)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def _json_log(make_gateway: GatewayFactory, vendor: Vendor, capfd: Any) -> None:
    settings = {"logging": {"format": "json"}, "alerts": {"auth_failures": {"threshold": 1}}}
    gw = await make_gateway(vendor.base_url, settings=settings)
    assert (await gw.send(auth=basic("nobody", "wrong"))).status == 401
    response = await gw.send(auth=basic("nobody", "wrong"))  # over the threshold: an alert, logged
    request_id = response.headers["X-Request-ID"]
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines, err
    assert all({"ts", "level", "logger", "message"} <= set(doc) for doc in lines)
    alert = [doc for doc in lines if doc["message"] == "alert auth_failures (alert)"]
    assert [(doc["level"], doc.get("request_id")) for doc in alert] == [("warning", request_id)], lines
    assert "+37255512367" not in err
