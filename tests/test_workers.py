"""``server.workers = N`` (gateway/server/workers.py run_workers): N processes of ``smsgw serve`` on one
port, sharing their limits through one Redis, each writing its own log files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    RedisServer,
    Vendor,
    basic,
    client_ssl,
    free_port,
    policy,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    folder: Path
    port: int
    admin_port: int

    @property
    def stderr(self) -> str:
        return (self.folder / "stderr.txt").read_text(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while self.stderr.count(text) < count:
            assert self.process.poll() is None, self.stderr
            assert time.monotonic() < deadline, self.stderr
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def records(self, name: str) -> list[dict]:
        path = self.folder / "logs" / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def serve_workers(tmp_path: Path, pki: dict[str, Path]) -> Iterator:
    started: list[Served] = []

    def start(vendor_url: str, settings: dict, policies: dict, name: str = "gw") -> Served:
        folder = tmp_path / name
        port, admin_port = free_port(), free_port()
        settings = {
            **settings,
            "server": {"listen": f"127.0.0.1:{port}", **settings.get("server", {})},
            "admin": {"listen": f"127.0.0.1:{admin_port}"},
        }
        config = write_config(folder, pki, vendor_url, settings, policies)
        stderr = (folder / "stderr.txt").open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "-c", str(config)],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
        stderr.close()
        served = Served(process, folder, port, admin_port)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.send_signal(signal.SIGTERM)
            try:
                served.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                served.process.kill()
                served.process.wait(timeout=5)


async def burst(pki: dict[str, Path], port: int, count: int, concurrency: int = 12) -> Counter[int]:
    """``count`` sends, each on a new connection (so the kernel spreads them over the workers)."""
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki), force_close=True)
    statuses: Counter[int] = Counter()
    todo = iter(range(count))
    url = f"https://127.0.0.1:{port}/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
    auth = {"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for _ in todo:
                form = {"To": "+37255512367", "From": "MyBank", "Body": "hello"}
                async with session.post(url, data=form, headers=auth) as response:
                    await response.read()
                    statuses[response.status] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def test_two_workers_share_one_limit_through_redis(
    serve_workers, vendor: Vendor, redis_server: RedisServer, pki: dict[str, Path]
) -> None:
    served = serve_workers(
        vendor.base_url,
        {"server": {"workers": 2}, "storage": {"url": redis_server.url}},
        policy(client={"rate_limits": ["100/minute"]}),
    )
    await asyncio.to_thread(served.wait_for, "worker 1 listening")
    await asyncio.to_thread(served.wait_for, "worker 2 listening")
    statuses = await burst(pki, served.port, 300)
    assert statuses == {201: 100, 429: 200}
    assert len(vendor.received) == 100
    # Spread over both processes: each wrote its own access and audit files.
    per_worker = {w: Counter(r["status"] for r in served.records(f"access.w{w}.jsonl")) for w in (1, 2)}
    assert all(sum(c.values()) > 0 for c in per_worker.values()), per_worker
    assert per_worker[1] + per_worker[2] == statuses
    for w in (1, 2):
        decisions = [r for r in served.records(f"audit.w{w}.jsonl") if r["event"] == "request"]
        assert len(decisions) == sum(per_worker[w].values())
    assert not (served.folder / "logs" / "audit.jsonl").exists()
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, 20) == 0
    # With the config, verify knows both workers' chains: one worker's file alone is not the log.
    logs, config = served.folder / "logs", str(served.folder / "config.toml")
    result = await asyncio.to_thread(_verify, "-c", config, str(logs / "audit.w1.jsonl"))
    assert result.returncode == 1, result.stdout
    assert "audit.w2.jsonl is missing: " in result.stderr and "server.workers = 2" in result.stderr
    both = [str(logs / f"audit.w{w}.jsonl") for w in (1, 2)]
    result = await asyncio.to_thread(_verify, "-c", config, *both)
    assert result.returncode == 0, result.stdout + result.stderr


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def test_a_dead_worker_is_started_again(
    serve_workers, vendor: Vendor, redis_server: RedisServer, pki: dict[str, Path]
) -> None:
    served = serve_workers(
        vendor.base_url, {"server": {"workers": 2}, "storage": {"url": redis_server.url}}, policy()
    )
    for w in (1, 2):
        await asyncio.to_thread(served.wait_for, f"worker {w} listening")
    first, second = served.worker_pids()
    os.kill(first, signal.SIGKILL)
    await asyncio.to_thread(served.wait_for, "exited (-9); starting it again")
    await asyncio.to_thread(served.wait_for, "listening on", 3)
    assert len(served.worker_pids()) == 2 and second in served.worker_pids()
    assert await burst(pki, served.port, 10) == {201: 10}
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, 20) == 0


async def test_a_worker_that_cannot_listen_stops_the_gateway(
    serve_workers, vendor: Vendor, redis_server: RedisServer
) -> None:
    """A port in use: the workers never listen; the supervisor gives up instead of looping."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = serve_workers(
            vendor.base_url,
            {"server": {"workers": 2, "listen": f"127.0.0.1:{port}"}, "storage": {"url": redis_server.url}},
            policy(),
        )
        code = await asyncio.to_thread(served.process.wait, 20)
    assert code == 1
    assert "exited before it listened" in served.stderr


# -- server.workers = "auto" ------------------------------------------------------------------------


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_check_config_accepts_workers_auto_as_one_per_core(tmp_path: Path, pki: dict[str, Path]) -> None:
    settings = {"server": {"workers": "auto"}, "storage": {"url": "redis://127.0.0.1:1/0"}}
    path = write_config(tmp_path, pki, "https://127.0.0.1:9", settings, policy())
    result = _check_config(path)
    assert result.returncode == 0, result.stderr
    from gateway.server.config import load_config

    assert load_config(path).settings.server.workers == min(_cores(), 64)


@pytest.mark.parametrize("value", ["many", "", 0, 65])
def test_a_bad_workers_value_is_a_config_error_naming_the_key(
    tmp_path: Path, pki: dict[str, Path], value: object
) -> None:
    settings = {"server": {"workers": value}, "storage": {"url": "redis://127.0.0.1:1/0"}}
    path = write_config(tmp_path, pki, "https://127.0.0.1:9", settings, policy())
    result = _check_config(path)
    assert result.returncode == 2
    assert "server.workers: " in result.stderr, result.stderr
    if isinstance(value, str):
        assert '"auto"' in result.stderr


async def test_serve_with_workers_auto_starts_one_worker_per_core(
    serve_workers, vendor: Vendor, redis_server: RedisServer, pki: dict[str, Path]
) -> None:
    served = serve_workers(
        vendor.base_url, {"server": {"workers": "auto"}, "storage": {"url": redis_server.url}}, policy()
    )
    cores = min(_cores(), 64)
    if cores == 1:  # one core: one process serves, no supervisor
        await asyncio.to_thread(served.wait_for, "smsgw listening on")
        assert served.worker_pids() == []
    else:
        for w in range(1, cores + 1):
            await asyncio.to_thread(served.wait_for, f"worker {w} listening")
        assert len(served.worker_pids()) == cores
    assert await burst(pki, served.port, 4) == {201: 4}
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, 20) == 0
