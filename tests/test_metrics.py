"""``/metrics`` on the admin listener (gateway/server/metrics.py): scraped after real traffic and parsed
with prometheus-client's own parser, in one process and with two worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    CLIENT_USER,
    GatewayFactory,
    RedisServer,
    Vendor,
    basic,
    policy,
)
from tests.test_workers import burst, serve_workers  # noqa: F401 (a fixture)
from tests.tokens import AUDIENCE, ISSUER, JwksServer, Keys, public_jwk

ROOT = Path(__file__).resolve().parent.parent
SMSGW = [sys.executable, "-m", "gateway"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by name and labels, read by prometheus-client's parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    return sum(
        v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(dict(ls).items())
    )


async def scrape(admin: str) -> tuple[aiohttp.ClientResponse, str]:
    async with aiohttp.ClientSession() as session, session.get(admin + "/metrics") as response:
        return response, (await response.read()).decode()


async def test_metrics_after_real_traffic(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    gw = await make_gateway(vendor.base_url)
    for _ in range(3):
        assert (await gw.send()).status == 201
    assert (await gw.send(auth=basic(CLIENT_USER, "wrong"))).status == 401
    assert (await gw.send(path="/nowhere")).status == 404
    response, text = await scrape(gw.admin)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Strict-Transport-Security"]  # the admin listener's security headers
    m = parse(text)
    route = "twilio-send"
    assert (
        value(m, "smsgw_requests_total", route=route, client="billing", decision="allow", status="201") == 3
    )
    assert value(m, "smsgw_requests_total", route=route, client="", decision="deny", status="401") == 1
    assert value(m, "smsgw_requests_total", route="", client="", decision="deny", status="404") == 1
    assert value(m, "smsgw_refusals_total", reason="unauthenticated") == 1
    assert value(m, "smsgw_refusals_total", reason="route_not_found") == 1
    assert value(m, "smsgw_request_duration_seconds_count", route=route) == 4
    assert value(m, "smsgw_request_duration_seconds_bucket", route=route, le="+Inf") == 4
    assert value(m, "smsgw_request_duration_seconds_sum", route=route) > 0
    assert value(m, "smsgw_upstream_duration_seconds_count", route=route) == 3
    assert value(m, "smsgw_upstream_responses_total", route=route, status="201") == 3
    # every stage is timed by the stage loop: the front chain for all five requests
    assert value(m, "smsgw_stage_duration_seconds_count", stage="route") == 5
    assert value(m, "smsgw_stage_duration_seconds_count", stage="authenticate") == 4
    assert value(m, "smsgw_stage_duration_seconds_count", stage="forward") == 3
    assert value(m, "smsgw_stage_duration_seconds_sum", stage="forward") > 0
    assert value(m, "smsgw_config_generation") == 1
    assert value(m, "smsgw_storage_up") == 1
    # a second scrape adds nothing that did not happen (flushed sums are not counted twice)
    _, again = await scrape(gw.admin)
    assert (
        value(
            parse(again),
            "smsgw_requests_total",
            route=route,
            client="billing",
            decision="allow",
            status="201",
        )
        == 3
    )


async def test_labels_never_hold_numbers_or_addresses(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    """Label values come from the config and the code: route, client, status, reason, stage."""
    gw = await make_gateway(vendor.base_url)
    numbers = [f"+3725551{i:04d}" for i in range(5)]
    for number in numbers:
        await gw.send({"To": number, "From": "MyBank", "Body": "hello 1234567"})
    await gw.send({"To": "+3725", "From": "MyBank", "Body": "x"})  # refused: invalid recipient
    _, text = await scrape(gw.admin)
    labels = {
        v
        for family in text_string_to_metric_families(text)
        for s in family.samples
        for v in s.labels.values()
    }
    assert labels, text
    for label in labels:
        assert not re.search(r"\d{5,}", label.replace(".", "")), label  # no number, no long digit run
        assert "127.0.0.1" not in label and "hello" not in label
    assert not any(number in text for number in numbers)
    assert "invalid_recipient" in labels


async def test_storage_errors_and_jwks_refreshes_are_counted(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer, pki: dict[str, Path]
) -> None:
    keys = Keys()
    server = JwksServer([public_jwk(keys.rsa)])
    await server.start(pki)
    try:
        issuer = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_url": server.url,
            "jwks_ca_file": str(pki["ca"]),
            "algorithms": ["RS256"],
        }
        gw = await make_gateway(
            vendor.base_url,
            settings={"storage": {"url": redis_server.url}, "auth": {"jwt": {"issuers": [issuer]}}},
            policies=policy(route={"auth": ["jwt", "basic"]}, client={"rate_limits": ["100/minute"]}),
        )
        assert (await gw.send()).status == 201
        redis_server.stop()
        for _ in range(2):
            assert (await gw.send()).status == 503
        _, text = await scrape(gw.admin)
        m = parse(text)
        assert value(m, "smsgw_storage_errors_total", during="rate_limits") == 2
        assert value(m, "smsgw_storage_up") == 0
        assert value(m, "smsgw_refusals_total", reason="limiter_unavailable") == 2
        assert value(m, "smsgw_jwks_refreshes_total", url=server.url, result="ok") == 1
        assert value(m, "smsgw_jwks_refreshes_total", url=server.url, result="failed") == 0
    finally:
        await server.stop()


# --------------------------------------------------------------------------- two worker processes


async def scrape_until(admin: str, done: Any, attempts: int = 100) -> Samples:
    """Scrape until ``done(samples)`` (workers flush every second; bounded)."""
    samples: Samples = {}
    for _ in range(attempts):
        _, text = await scrape(admin)
        samples = parse(text)
        if done(samples):
            return samples
        await asyncio.sleep(0.1)
    return samples


async def test_two_workers_metrics_add_up(
    serve_workers,  # noqa: F811
    vendor: Vendor,
    redis_server: RedisServer,
    pki: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every worker counts in its own files; any worker's /metrics sums all of them. The metrics
    directory is private and starts empty; a reload through the pid file reaches both workers."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir(mode=0o755)
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # a previous run's: removed at start
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    served = serve_workers(
        vendor.base_url,
        {"server": {"workers": 2}, "storage": {"url": redis_server.url}},
        policy(client={"rate_limits": ["1000/minute"]}),
    )
    for w in (1, 2):
        await asyncio.to_thread(served.wait_for, f"worker {w} listening")
    assert stat.S_IMODE(metrics_dir.stat().st_mode) == 0o700
    assert not (metrics_dir / "counter_999999.db").exists()
    statuses = await burst(pki, served.port, 60)
    assert statuses == {201: 60}
    per_worker = {w: len(served.records(f"access.w{w}.jsonl")) for w in (1, 2)}
    assert all(per_worker.values()), per_worker  # both workers served
    admin = f"http://127.0.0.1:{served.admin_port}"
    route = "twilio-send"

    def added_up(m: Samples) -> bool:
        # a scrape can read a worker's files while that worker's flush is writing them, family by
        # family: wait until every family asserted below has all 60
        return (
            value(m, "smsgw_requests_total", route=route, client="billing", decision="allow", status="201")
            == 60
            and value(m, "smsgw_request_duration_seconds_count", route=route) == 60
            and value(m, "smsgw_upstream_responses_total", route=route, status="201") == 60
            and value(m, "smsgw_stage_duration_seconds_count", stage="forward") == 60
        )

    m = await scrape_until(admin, added_up)
    assert added_up(m), {k: v for k, v in m.items() if k[0] == "smsgw_requests_total"}
    assert value(m, "smsgw_request_duration_seconds_count", route=route) == 60
    assert value(m, "smsgw_upstream_responses_total", route=route, status="201") == 60
    assert value(m, "smsgw_stage_duration_seconds_count", stage="forward") == 60
    assert value(m, "smsgw_config_generation") == 1

    # SIGHUP through the pid file: both workers take the new policy, and the gauge follows
    pid = int((served.folder / "smsgw.pid").read_text())
    assert pid == served.process.pid  # the supervisor's
    config = served.folder / "config.toml"
    (served.folder / "policies" / "default.toml").write_text(
        (served.folder / "policies" / "default.toml").read_text().replace("1000/minute", "900/minute")
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = await asyncio.create_subprocess_exec(
        *SMSGW, "reload", "-c", str(config), "--wait", "15",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(result.communicate(), 30)
    assert result.returncode == 0, err.decode()
    assert b"reloaded: config generation 2" in out
    for w in (1, 2):
        await asyncio.to_thread(served.wait_for, "config reloaded: generation 2", 2)
        loads = [r for r in served.records(f"audit.w{w}.jsonl") if r["event"] == "config_loaded"]
        assert [(r["trigger"], r["generation"]) for r in loads] == [("start", 1), ("reload", 2)]
    m = await scrape_until(
        admin,
        lambda m: (
            value(m, "smsgw_config_generation") == 2
            and value(m, "smsgw_config_reloads_total", result="ok") == 2
        ),
    )
    assert value(m, "smsgw_config_generation") == 2
    assert value(m, "smsgw_config_reloads_total", result="ok") == 2  # one per worker
    async with aiohttp.ClientSession() as session, session.get(admin + "/readyz") as response:
        ready = json.loads(await response.read())
    assert ready["config_generation"] == 2 and ready["worker"] in (1, 2)

    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, 30) == 0
    assert list(metrics_dir.glob("*.db")) == []  # the supervisor cleans up after itself
    assert not (served.folder / "smsgw.pid").exists()
