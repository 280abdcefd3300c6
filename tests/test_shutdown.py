"""Graceful shutdown of a real ``smsgw serve`` process: SIGTERM stops accepting, /readyz says 503,
every request that reached the gateway is answered, and the process exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import CLIENT_PASSWORD, CLIENT_USER, Recorder, RedisServer, basic, client_ssl, policy
from tests.test_workers import Served, serve_workers  # noqa: F401 (a fixture)

FORM = {"To": "+37255512367", "From": "MyBank", "Body": "hello"}


def holding_vendor() -> Recorder:
    """A vendor that keeps every send until ``release`` is set."""
    recorder = Recorder()

    async def hold(_: web.Request, __: bytes) -> web.StreamResponse:
        await recorder.release.wait()
        return web.json_response({"sid": "SM" + "3" * 32, "status": "queued"}, status=201)

    recorder.behaviour = hold
    return recorder


def session_for(pki: dict[str, Path], keepalive: bool, size: int = 32) -> aiohttp.ClientSession:
    """Sends on a few keep-alive connections, or each on a new one."""
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki), force_close=not keepalive, limit=size)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


def send_all(session: aiohttp.ClientSession, port: int, count: int) -> list[asyncio.Task[int]]:
    """``count`` sends started at once."""
    url = f"https://127.0.0.1:{port}/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
    headers = {"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)}

    async def one() -> int:
        async with session.post(url, data=FORM, headers=headers) as response:
            await response.read()
            return response.status

    return [asyncio.create_task(one()) for _ in range(count)]


async def wait_until(condition, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


async def readyz_status(admin_port: int) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{admin_port}/readyz") as response:
            body = json.loads(await response.read())
            assert body["status"] == ("ready" if response.status == 200 else "not ready")
            return response.status


async def refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (ConnectionRefusedError, OSError):
        return True
    writer.close()
    return False


async def test_sigterm_under_load_answers_every_request_and_exits_0(
    serve_workers,  # noqa: F811
    vendors,
    pki: dict[str, Path],
) -> None:
    recorder = holding_vendor()
    vendor = await vendors(recorder)
    served: Served = serve_workers(vendor.base_url, {"server": {"shutdown_timeout_s": 20}}, policy())
    await asyncio.to_thread(served.wait_for, "listening on")
    assert await readyz_status(served.admin_port) == 200
    async with session_for(pki, keepalive=True, size=4) as pooled, session_for(pki, keepalive=False) as fresh:
        # 16 sends over 4 keep-alive connections (4 of them in flight, 12 queued on the client),
        # and 16 each on its own connection
        in_flight = send_all(pooled, served.port, 16) + send_all(fresh, served.port, 16)
        await wait_until(lambda: len(recorder.seen) == 20)  # these reached the gateway and the vendor
        served.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(served.wait_for, "shutting down")
        assert await readyz_status(served.admin_port) == 503  # draining: the load balancer stops sending
        for _ in range(100):  # bounded
            if await refuses_connections(served.port):
                break
            await asyncio.sleep(0.05)
        assert await refuses_connections(served.port)  # no new connection is accepted
        recorder.release.set()
        results = await asyncio.wait_for(asyncio.gather(*in_flight, return_exceptions=True), 30)
    statuses = Counter(r if isinstance(r, int) else type(r).__name__ for r in results)
    # The 20 that reached the gateway were answered. The 12 the client still held for its busy
    # keep-alive connections were never sent: answers during the drain say Connection: close, so
    # none was written onto a connection the gateway then closed unread (ServerDisconnectedError);
    # each found the listener closed (a client may retry those safely).
    assert statuses == {201: 20, "ClientConnectorError": 12}, statuses
    assert await asyncio.to_thread(served.process.wait, 30) == 0
    access = served.records("access.jsonl")
    assert Counter(r["status"] for r in access) == {201: 20}  # nothing else reached the gateway
    assert len(recorder.seen) == 20
    assert served.records("audit.jsonl")[-1]["event"] == "gateway_stopped"


async def test_the_drain_is_bounded_by_shutdown_timeout(
    serve_workers,  # noqa: F811
    vendors,
    pki: dict[str, Path],
) -> None:
    """A send the vendor never answers is cut after ``shutdown_timeout_s``; the exit is still clean."""
    recorder = holding_vendor()
    vendor = await vendors(recorder)
    served: Served = serve_workers(vendor.base_url, {"server": {"shutdown_timeout_s": 1}}, policy())
    await asyncio.to_thread(served.wait_for, "listening on")
    async with session_for(pki, keepalive=False) as session:
        (stuck,) = send_all(session, served.port, 1)
        await wait_until(lambda: len(recorder.seen) == 1)
        served.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(served.process.wait, 30) == 0
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(stuck, 10)
    assert served.records("audit.jsonl")[-1]["event"] == "gateway_stopped"


async def test_sigterm_with_two_workers_answers_every_request(
    serve_workers,  # noqa: F811
    vendors,
    redis_server: RedisServer,
    pki: dict[str, Path],
) -> None:
    recorder = holding_vendor()
    vendor = await vendors(recorder)
    served: Served = serve_workers(
        vendor.base_url, {"server": {"workers": 2}, "storage": {"url": redis_server.url}}, policy()
    )
    for w in (1, 2):
        await asyncio.to_thread(served.wait_for, f"worker {w} listening")
    async with session_for(pki, keepalive=False) as session:
        in_flight = send_all(session, served.port, 24)
        await wait_until(lambda: len(recorder.seen) == 24)
        served.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(served.wait_for, "shutting down", 2)
        recorder.release.set()
        assert Counter(await asyncio.wait_for(asyncio.gather(*in_flight), 30)) == {201: 24}
    assert await asyncio.to_thread(served.process.wait, 30) == 0
    per_worker = [len(served.records(f"access.w{w}.jsonl")) for w in (1, 2)]
    assert sum(per_worker) == 24
