"""The admin listener: health and readiness for orchestrators, never on the public listener."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Gateway, GatewayFactory, Recorder, error_of, start_vendor

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Server": "smsgw",
}


async def admin_get(gw: Gateway, path: str, method: str = "GET") -> tuple[aiohttp.ClientResponse, bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, gw.admin + path) as response:
        return response, await response.read()


def assert_security_headers(response: aiohttp.ClientResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


async def test_healthz(gateway: Gateway) -> None:
    response, payload = await admin_get(gateway, "/healthz")
    assert response.status == 200
    assert json.loads(payload) == {"status": "ok"}
    assert response.content_type == "application/json"
    assert_security_headers(response)


async def test_readyz_while_running(gateway: Gateway) -> None:
    response, payload = await admin_get(gateway, "/readyz")
    assert response.status == 200
    assert json.loads(payload)["status"] == "ready"
    assert_security_headers(response)


async def test_unknown_admin_path_is_json_404(gateway: Gateway) -> None:
    response, payload = await admin_get(gateway, "/metrics-nope")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert json.loads(payload)["error"]["code"] == "route_not_found"
    assert_security_headers(response)


async def test_admin_answers_carry_a_request_id(gateway: Gateway) -> None:
    ok, _ = await admin_get(gateway, "/healthz")
    assert ok.headers.get("X-Request-ID")
    missing, payload = await admin_get(gateway, "/nope")
    error = error_of(payload)
    assert error["request_id"] == missing.headers.get("X-Request-ID")
    assert isinstance(error["request_id"], str)


async def test_wrong_method_on_admin_path(gateway: Gateway) -> None:
    response, payload = await admin_get(gateway, "/healthz", method="POST")
    assert response.status == 405
    assert error_of(payload)["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_admin_paths_are_not_on_the_public_listener(gateway: Gateway, path: str) -> None:
    async with gateway.session.get(gateway.base + path) as response:
        payload = await response.read()
        assert response.status == 404
        assert error_of(payload)["code"] == "route_not_found"
        assert_security_headers(response)
        assert response.headers["X-Request-ID"] == error_of(payload)["request_id"]


async def test_readyz_is_503_while_draining(gateway: Gateway) -> None:
    """``Running.stop`` sets ``draining`` first; from then on readiness says no."""
    gateway.running.draining = True
    response, payload = await admin_get(gateway, "/readyz")
    assert response.status == 503
    answer = json.loads(payload)
    assert answer == {
        "status": "not ready",
        "storage": "up",
        "config_generation": 1,
        "config_sha256": gateway.running.config_sha256,
    }
    assert len(answer["config_sha256"]) == 64
    assert_security_headers(response)
    health, _ = await admin_get(gateway, "/healthz")
    assert health.status == 200  # alive, just not taking new work


async def test_readyz_is_503_once_stop_begins(make_gateway: GatewayFactory, pki: dict[str, Path]) -> None:
    """A send is in flight when stop begins: readiness drops at once, the send still completes."""
    recorder = Recorder()

    async def hold(_: web.Request, __: bytes) -> web.StreamResponse:
        await recorder.release.wait()
        return web.json_response({"sid": "SM" + "0" * 32}, status=201)

    recorder.behaviour = hold
    vendor = await start_vendor(pki, recorder.app())
    background: list[asyncio.Task] = []
    try:
        gw = await make_gateway(vendor.base_url, settings={"server": {"shutdown_timeout_s": 10}})
        in_flight = asyncio.create_task(gw.send())
        background.append(in_flight)
        await asyncio.wait_for(recorder.arrived.wait(), 5)
        background.append(asyncio.create_task(gw.running.stop()))
        status, payload = 200, b""
        async with aiohttp.ClientSession() as admin:
            for _ in range(200):  # bounded: at most ~5 s
                async with admin.get(gw.admin + "/readyz") as response:
                    status, payload = response.status, await response.read()
                if status == 503:
                    break
                await asyncio.sleep(0.025)
        assert status == 503
        assert json.loads(payload) == {
            "status": "not ready",
            "storage": "up",
            "config_generation": 1,
            "config_sha256": gw.running.config_sha256,
        }
        recorder.release.set()
        sent = await asyncio.wait_for(in_flight, 10)
        assert sent.status == 201  # the send in flight still completed
    finally:
        recorder.release.set()
        await asyncio.wait_for(asyncio.gather(*background, return_exceptions=True), 15)
        await vendor.runner.cleanup()
