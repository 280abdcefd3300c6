"""Shared test harness: real TLS (trustme CA), a real vendor server, the gateway on loopback.

Every gateway here is started through ``gateway.server.main.start`` from TOML files written to a
temporary folder and loaded with the real loader, exactly as ``smsgw serve`` does.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any

import aiohttp
import pytest
import redis
import tomli_w
import trustme
from aiohttp import web
from multidict import CIMultiDict

from gateway.commands.sandbox import SandboxState, build_sandbox_app
from gateway.core.events import LIFECYCLE_EVENTS
from gateway.server.config import load_config
from gateway.server.main import Running, start

VENDOR_SID = "AC" + "a1" * 16
VENDOR_TOKEN = "vendor-token-3f9c1e0b7d2a4c58"  # the vendor credential only the gateway holds
BEARER_TOKEN = "vendor-bearer-9e8d7c6b5a4f3e2d"
CLIENT_USER = "AC00000000000000000000000000billing"
CLIENT_PASSWORD = "client-password-7b1f0c2e9d8a6b54c3"  # what the client's SDK sends
HASH_KEY = "1hURN1uF0Vt5Qbm7xykITDcodmJl1LuEDtmA7LJzD8c"  # as `smsgw keygen hash-key` makes one


def basic(user: str | bytes, password: str | bytes, scheme: str = "Basic") -> str:
    """An Authorization value; bytes let a test send a credential that is not UTF-8."""
    raw = (user if isinstance(user, bytes) else user.encode()) + b":"
    raw += password if isinstance(password, bytes) else password.encode()
    return f"{scheme} {base64.b64encode(raw).decode()}"


def sha(text: str) -> str:
    """The hex SHA-256 a policy stores for a client password."""
    return hashlib.sha256(text.encode()).hexdigest()


def free_port() -> int:
    """A loopback port nobody listens on (bound and released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CA file, the gateway's certificate pair and the vendor's certificate pair, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    paths = {"ca": folder / "ca.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    for name in ("gateway", "vendor"):
        cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
        paths[f"{name}_cert"] = folder / f"{name}.pem"
        paths[f"{name}_key"] = folder / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(paths[f"{name}_cert"]))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(paths[f"{name}_cert"]), append=True)
        cert.private_key_pem.write_to_path(str(paths[f"{name}_key"]))
        paths[f"{name}_key"].chmod(0o600)  # as an operator keeps it: check-config warns otherwise
    return paths


def client_ssl(pki: dict[str, Path], **versions: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    for attr, value in versions.items():
        setattr(ctx, attr, value)
    return ctx


@dataclass
class Vendor:
    """A real aiohttp server on loopback playing the SMS vendor (the sandbox app by default)."""

    state: SandboxState
    runner: web.AppRunner
    base_url: str

    @property
    def received(self) -> list[Any]:
        return self.state.received


async def start_vendor(pki: dict[str, Path], app: web.Application | None = None, tls: bool = True) -> Vendor:
    state = SandboxState(VENDOR_SID, VENDOR_TOKEN, BEARER_TOKEN)
    app = app if app is not None else build_sandbox_app(state)
    ctx = None
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki["vendor_cert"], pki["vendor_key"])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    return Vendor(state, runner, f"{'https' if tls else 'http'}://127.0.0.1:{port}")


@pytest.fixture
async def vendor(pki: dict[str, Path]) -> AsyncIterator[Vendor]:
    v = await start_vendor(pki)
    yield v
    await v.runner.cleanup()


DEFAULT_POLICY: dict[str, Any] = {
    "client": [
        {
            "id": "billing",
            "scopes": ["sms:send"],
            "countries": ["*"],
            "basic": [
                {
                    "username": CLIENT_USER,
                    "password_sha256": sha(CLIENT_PASSWORD),
                }
            ],
        }
    ],
    "route": [
        {
            "name": "twilio-send",
            "methods": ["POST"],
            "path": "/2010-04-01/Accounts/{account}/Messages.json",
            "kind": "sms",
            "auth": ["basic"],
            "scopes": ["sms:send"],
        }
    ],
}


def write_config(
    folder: Path,
    pki: dict[str, Path],
    vendor_url: str,
    settings: dict[str, Any] | None = None,
    policies: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write config.toml, secrets and policies/*.toml into ``folder``; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    secrets = folder / "secrets"
    secrets.mkdir(exist_ok=True, mode=0o700)
    for name, value in (("vendor_token", VENDOR_TOKEN + "\n"), ("hash_key", HASH_KEY)):
        (secrets / name).write_text(value)
        (secrets / name).chmod(0o600)  # check-config warns about secret files others can read
    base: dict[str, Any] = {
        "server": {
            "listen": "127.0.0.1:0",
            "tls": {"cert_file": str(pki["gateway_cert"]), "key_file": str(pki["gateway_key"])},
        },
        "admin": {"listen": "127.0.0.1:0"},
        "upstream": {
            "provider": "twilio",
            "base_url": vendor_url,
            "ca_file": str(pki["ca"]),
            "connect_timeout_s": 2,
            "timeout_s": 5,
            "credentials": {"type": "basic", "username": VENDOR_SID, "password": "file:secrets/vendor_token"},
        },
        "logging": {
            "access_log": "logs/access.jsonl",
            "audit_log": "logs/audit.jsonl",
            "body": "hash",
            "recipient": "mask",
            "hash_key": "file:secrets/hash_key",
        },
        "policies": {"dir": "policies"},
    }
    config = deep_merge(base, settings or {})
    (folder / "config.toml").write_text(tomli_w.dumps(config))
    pdir = folder / "policies"
    pdir.mkdir(exist_ok=True)
    for old in pdir.glob("*.toml"):
        old.unlink()
    for name, policy in (policies if policies is not None else {"default": DEFAULT_POLICY}).items():
        (pdir / f"{name}.toml").write_text(tomli_w.dumps(policy))
    return folder / "config.toml"


@dataclass
class Gateway:
    running: Running
    folder: Path
    pki: dict[str, Path]
    session: aiohttp.ClientSession
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.running.public_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.running.admin_port}"

    @property
    def send_path(self) -> str:
        return f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"

    def logs(self) -> str:
        """Everything the gateway wrote to its log folder."""
        return "".join(p.read_text() for p in sorted((self.folder / "logs").glob("*")) if p.is_file())

    def audit(self) -> list[dict[str, Any]]:
        """The audit records about requests and outages: the gateway's own lifecycle events
        (``config_loaded``, ``gateway_stopped``, rotations, ...) are left out; see ``audit_all``."""
        return [r for r in self.audit_all() if r.get("event") not in LIFECYCLE_EVENTS]

    def audit_all(self) -> list[dict[str, Any]]:
        path = self.folder / "logs" / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def access(self) -> list[dict[str, Any]]:
        path = self.folder / "logs" / "access.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    async def send(
        self,
        form: dict[str, str] | None = None,
        *,
        auth: str | None = None,
        headers: dict[str, str] | None = None,
        path: str | None = None,
        method: str = "POST",
    ) -> aiohttp.ClientResponse:
        """POST a Twilio-shaped form with the client's basic credential (read body before leaving)."""
        hdrs = {"Authorization": auth if auth is not None else basic(CLIENT_USER, CLIENT_PASSWORD)}
        if auth == "":
            hdrs.pop("Authorization")
        hdrs.update(headers or {})
        data = form if form is not None else {"To": "+37255512367", "From": "MyBank", "Body": "hello"}
        response = await self.session.request(
            method, self.base + (path or self.send_path), data=data, headers=hdrs
        )
        await response.read()
        return response


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def make_gateway(tmp_path: Path, pki: dict[str, Path]) -> AsyncIterator[GatewayFactory]:
    """``await make_gateway(vendor_url, settings={...}, policies={...})`` starts a gateway."""
    started: list[Gateway] = []

    async def factory(
        vendor_url: str,
        settings: dict[str, Any] | None = None,
        policies: dict[str, dict[str, Any]] | None = None,
        folder: Path | None = None,
    ) -> Gateway:
        folder = folder or tmp_path / f"gw{len(started)}"
        config = load_config(write_config(folder, pki, vendor_url, settings, policies))
        running = await start(config)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(pki)))
        gw = Gateway(running, folder, pki, session)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.session.close()
        await gw.running.stop()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, vendor: Vendor) -> Gateway:
    return await make_gateway(vendor.base_url)


# -- policies ------------------------------------------------------------------------------


def policy(route: dict[str, Any] | None = None, client: dict[str, Any] | None = None) -> dict[str, Any]:
    """DEFAULT_POLICY with extra keys on its one route and its one client."""
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["route"][0].update(route or {})
    doc["client"][0].update(client or {})
    return {"default": doc}


# -- a vendor that records what reached it --------------------------------------------------


@dataclass
class Seen:
    """One request as the vendor's server saw it on the wire."""

    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes

    @property
    def path(self) -> str:
        return self.raw_path.split("?", 1)[0]

    @property
    def raw_query(self) -> str:
        return self.raw_path.partition("?")[2]


Behaviour = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


async def answer_created(_: web.Request, __: bytes) -> web.StreamResponse:
    return web.json_response({"sid": "SM" + token_hex(16), "status": "queued"}, status=201)


@dataclass
class Recorder:
    """A vendor app that records every request and answers with ``behaviour``."""

    behaviour: Behaviour = answer_created
    seen: list[Seen] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.seen.append(Seen(request.method, request.raw_path, CIMultiDict(request.headers), body))
            self.arrived.set()
            return await self.behaviour(request, body)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


# -- extra vendors ---------------------------------------------------------------------------


@pytest.fixture
async def vendors(pki: dict[str, Path]):
    """Start extra vendor servers; all are stopped (and any parked handler released) afterwards."""
    started: list[tuple[Vendor, Recorder | None]] = []

    async def factory(recorder: Recorder | None = None, vendor_pki: dict[str, Path] | None = None) -> Vendor:
        app = recorder.app() if recorder is not None else None
        v = await start_vendor(vendor_pki or pki, app)
        started.append((v, recorder))
        return v

    yield factory
    for v, recorder in started:
        if recorder is not None:
            recorder.release.set()
        await v.runner.cleanup()


# -- talking to the gateway -----------------------------------------------------------------


def error_of(payload: bytes) -> dict[str, Any]:
    """The error object of a gateway refusal, which has exactly the documented keys."""
    doc = json.loads(payload)
    assert set(doc) == {"error"}
    assert set(doc["error"]) == {"code", "message", "request_id"}
    return doc["error"]


async def post(
    gw: Gateway,
    body: bytes | AsyncIterable[bytes],
    *,
    content_type: str = "application/x-www-form-urlencoded",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    path: str | None = None,
    query: str = "",
    session: aiohttp.ClientSession | None = None,
    allow_redirects: bool = True,
) -> tuple[aiohttp.ClientResponse, bytes]:
    """POST raw bytes (or chunks) with the client's basic credential; returns the response and body."""
    hdrs: CIMultiDict[str] = CIMultiDict(
        {"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD), "Content-Type": content_type}
    )
    if headers:
        replaced: set[str] = set()  # the first Authorization/Content-Type given replaces the default
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            lower = name.lower()
            if lower in ("authorization", "content-type") and lower not in replaced:
                hdrs[name] = value
                replaced.add(lower)
            else:
                hdrs.add(name, value)
    url = gw.base + (path or gw.send_path) + (f"?{query}" if query else "")
    client = session or gw.session
    async with client.post(url, data=body, headers=hdrs, allow_redirects=allow_redirects) as response:
        return response, await response.read()


async def raw_exchange(port: int, request: bytes, ctx: ssl.SSLContext | None = None) -> bytes:
    """Write raw bytes, read until the server closes (bounded); a reset counts as no answer."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None),
        timeout=5,
    )
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=5)
    except (ConnectionResetError, ssl.SSLError):
        return b""
    finally:
        writer.close()


# -- a real redis-server on a free port (never 6379), which a test may stop and start again --


@dataclass
class RedisServer:
    """``redis-server`` in a temporary folder, no persistence, loopback only."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str, config: Path | None = None) -> None:
        """``config``: a file to start from (a sentinel's, with ``--sentinel`` in ``extra``)."""
        assert self.port != 6379, "tests never touch a Redis on the default port"
        self.process = subprocess.Popen(
            [
                "redis-server",
                *([str(config)] if config is not None else []),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
                "--logfile", str(self.folder / "redis.log"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Killed, as a crash would (SIGKILL): no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def dump(self) -> dict[bytes, Any]:
        """Every key and its value(s), whatever the type: for scanning storage for clear text."""
        r = self.client()
        out: dict[bytes, Any] = {}
        for key in r.scan_iter(count=1000):
            kind = r.type(key)
            if kind == b"string":
                out[key] = r.get(key)
            elif kind == b"zset":
                out[key] = r.zrange(key, 0, -1, withscores=True)
            elif kind == b"list":
                out[key] = r.lrange(key, 0, -1)
            elif kind == b"hash":
                out[key] = r.hgetall(key)
            else:
                out[key] = kind
        return out

    def calls(self) -> dict[str, int]:
        """Commands run since the last reset, by name (``INFO commandstats``)."""
        stats = self.client().info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def reset_calls(self) -> None:
        self.client().config_resetstat()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``[storage]`` settings: one process's memory, or a real redis-server on a free port."""
    if request.param == "memory":
        return {"storage": {"url": "memory://"}}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"storage": {"url": server.url}}


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
