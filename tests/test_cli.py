"""The ``smsgw`` command as users run it: real subprocesses, real ports, real files.

Every subprocess here is bounded by a timeout and killed at the end if it is still running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from gateway.config.schema import BasicCredentialConfig
from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    HASH_KEY,
    VENDOR_SID,
    VENDOR_TOKEN,
    Vendor,
    basic,
    client_ssl,
    free_port,
    policy,
)
from tests.conftest import write_config as write_any_config

#: The default policy with a rate limit on its client (a client without one is a warning).
LIMITED = policy(client={"rate_limits": ["600/minute"]})


def write_config(
    folder: Path,
    pki: dict[str, Path],
    vendor_url: str,
    settings: dict[str, Any] | None = None,
    policies: dict[str, dict[str, Any]] | None = None,
) -> Path:
    return write_any_config(folder, pki, vendor_url, settings, LIMITED if policies is None else policies)


_SCRIPT = Path(sys.executable).with_name("smsgw")
#: The console script when it is installed next to this interpreter, else ``python -m gateway``.
SMSGW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "gateway"]
TIMEOUT = 30
DEMO_BODY = "Your code is 123456"
DEMO_NUMBER = "+37255512367"


def run(
    *args: str, cwd: Path | None = None, cmd: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(cmd or SMSGW), *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def read(path: Path) -> str:
    return path.read_text()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- check-config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmd",
    [pytest.param(SMSGW, id="console-script"), pytest.param([sys.executable, "-m", "gateway"], id="module")],
)
def test_check_config_ok(tmp_path: Path, pki: dict[str, Path], cmd: list[str]) -> None:
    config = write_config(tmp_path, pki, "https://127.0.0.1:1")
    result = run("check-config", "-c", str(config), cmd=cmd)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: OK (1 clients, 1 routes)\n"
    assert result.stderr == ""


def test_check_config_bad_lists_file_and_key_per_problem(tmp_path: Path, pki: dict[str, Path]) -> None:
    bad_route = {"name": "r", "path": "/v1/send", "auth": ["basic"], "kind": "otp", "otp": {"detect": "x"}}
    write_config(
        tmp_path,
        pki,
        "https://127.0.0.1:1",
        {"server": {"workers": 2}, "storage": {"url": "memory://"}},
        {"otp": {"route": [bad_route]}},
    )
    result = run("check-config", "-c", "config.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[:-1] == [
        "config.toml: server.workers: more than one worker needs Redis storage (storage.url): with "
        "memory:// each process would keep its own counters, so no limit, OTP cap or idempotency key "
        "would hold",
        "policies/otp.toml: route[0].otp.detect: detect applies to kind = 'sms' routes only; "
        "every 'otp' request is capped",
    ]
    assert lines[-1] == "2 problem(s); nothing was started."
    assert VENDOR_TOKEN not in result.stderr and HASH_KEY not in result.stderr


def test_check_config_inline_secret_says_how_to_reference_it(tmp_path: Path, pki: dict[str, Path]) -> None:
    write_config(tmp_path, pki, "https://127.0.0.1:1", {"upstream": {"credentials": {"password": "hunter2"}}})
    result = run("check-config", "-c", "config.toml", cwd=tmp_path)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("config.toml: upstream.credentials.password: secrets must not be written inline")
    assert "env:" in first and "file:" in first
    assert "hunter2" not in result.stderr


def test_check_config_warnings_go_to_stderr_and_exit_0(tmp_path: Path, pki: dict[str, Path]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o700)
    (logs / "audit.jsonl").touch(mode=0o644)
    (logs / "audit.jsonl").chmod(0o644)
    settings = {"hsts": {"max_age_s": 600}, "admin": {"listen": "0.0.0.0:0"}}
    write_config(tmp_path, pki, "https://127.0.0.1:1", settings)
    result = run("check-config", "-c", "config.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "config.toml: OK (1 clients, 1 routes, 3 warning(s))\n"
    assert result.stderr.splitlines() == [
        "config.toml: hsts.max_age_s: warning: 600 is under one year (31536000): "
        "browsers forget sooner that this host is HTTPS only",
        "config.toml: admin.listen: warning: 0.0.0.0:0 is not a loopback address: health and readiness "
        "answer the network; use 127.0.0.1 unless a firewall keeps this port private",
        f"config.toml: logging.audit_log: warning: file {logs / 'audit.jsonl'} has mode 0644, "
        "wider than 0600; smsgw sets 0600 when it starts",
    ]
    assert stat.S_IMODE((logs / "audit.jsonl").stat().st_mode) == 0o644  # checking changes nothing


def test_check_config_shows_warnings_with_problems(tmp_path: Path, pki: dict[str, Path]) -> None:
    empty = hashlib.sha256(b"").hexdigest()
    open_door = {"client": [{"id": "c", "basic": [{"username": "u", "password_sha256": empty}]}]}
    write_config(tmp_path, pki, "https://127.0.0.1:1", {"hsts": {"max_age_s": 600}}, {"p": open_door})
    result = run("check-config", "-c", "config.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "policies/p.toml: client[0].basic[0].password_sha256: is the SHA-256 of the empty password: "
        "anyone could log in; make a credential with `smsgw keygen basic`",
        "config.toml: hsts.max_age_s: warning: 600 is under one year (31536000): "
        "browsers forget sooner that this host is HTTPS only",
        "1 problem(s); nothing was started.",
    ]


def test_check_config_takes_a_key_from_keygen(tmp_path: Path, pki: dict[str, Path]) -> None:
    """The refusal of weak keys points at `smsgw keygen hash-key`: what it makes must pass."""
    config = write_config(tmp_path, pki, "https://127.0.0.1:1", {"logging": {"chain_key": "file:chain"}})
    (tmp_path / "chain").write_text(run("keygen", "hash-key").stdout)
    (tmp_path / "chain").chmod(0o600)
    result = run("check-config", "-c", str(config))
    assert (result.returncode, result.stderr) == (0, "")


def test_check_config_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run("check-config", "-c", str(missing))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"{missing}: file does not exist"


def test_check_config_needs_a_file_argument() -> None:
    result = run("check-config")
    assert result.returncode == 2
    assert "-c/--config" in result.stderr


# -- keygen -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hash-key"])
def test_keygen_token(kind: str) -> None:
    tokens = []
    for _ in range(2):
        result = run("keygen", kind)
        assert result.returncode == 0, result.stderr
        token = result.stdout.strip()
        assert result.stdout == token + "\n"
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token), token
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
        tokens.append(token)
    assert tokens[0] != tokens[1]


def test_keygen_basic_password_matches_its_digest() -> None:
    outputs = []
    for _ in range(2):
        result = run("keygen", "basic")
        assert result.returncode == 0, result.stderr
        password = re.search(r"^# password: (\S+)$", result.stdout, re.M)
        digest = re.search(r'^password_sha256\s*=\s*"([^"]*)"', result.stdout, re.M)
        assert password and digest, result.stdout
        assert hashlib.sha256(password[1].encode()).hexdigest() == digest[1]
        assert len(password[1]) >= 32
        BasicCredentialConfig(username="u", password_sha256=digest[1])  # what [[client.basic]] accepts
        outputs.append((password[1], digest[1]))
    assert outputs[0] != outputs[1]


def test_keygen_basic_output_pasted_under_a_client_is_a_valid_policy(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    """The password is a comment, not a ``password =`` line next to ``password_sha256``: pasted as
    printed, the lines configure the digest only and the clear password is no key of the policy."""
    config = write_config(tmp_path, pki, "https://127.0.0.1:1")
    result = run("keygen", "basic", "--username", "pasted-user")
    assert result.returncode == 0, result.stderr
    password = re.search(r"^# password: (\S+)$", result.stdout, re.M)
    assert password, result.stdout
    assert not [line for line in result.stdout.splitlines() if re.match(r"\s*password\s*=", line)]
    policy = tmp_path / "policies" / "pasted.toml"
    client = (
        '[[client]]\nid = "pasted"\nscopes = ["sms:send"]\ncountries = ["EE"]\nrate_limits = ["10/minute"]\n'
    )
    policy.write_text(f"{client}\n{result.stdout}")
    checked = run("check-config", "-c", str(config))
    assert (checked.returncode, checked.stderr) == (0, "")
    assert checked.stdout == f"{config}: OK (2 clients, 1 routes)\n"
    pasted = tomllib.loads(policy.read_text())["client"][0]["basic"]
    assert pasted == [
        {"username": "pasted-user", "password_sha256": hashlib.sha256(password[1].encode()).hexdigest()}
    ]


@pytest.mark.parametrize(
    ("kind", "own", "others"),
    [
        ("hmac", ["--client", "--key-id", "--days"], ["--private", "--username", "--host"]),
        ("hash-key", [], ["--client", "--days", "--private", "--username", "--cert"]),
        ("basic", ["--username"], ["--client", "--days", "--type", "--host"]),
        ("seal", ["--type", "--private", "--public"], ["--client", "--days", "--username", "--host"]),
        ("cert", ["--cert", "--key", "--host", "--days"], ["--client", "--private", "--username"]),
    ],
)
def test_keygen_each_kind_has_its_own_flags(kind: str, own: list[str], others: list[str]) -> None:
    result = run("keygen", kind, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: smsgw keygen {kind} ")
    for flag in own:
        assert flag in result.stdout, flag
    for flag in others:
        assert flag not in result.stdout, flag
    refused = run("keygen", kind, others[0], "x")  # another kind's flag is an error, not ignored
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert f"unrecognized arguments: {others[0]} x" in refused.stderr


def test_keygen_lists_its_kinds() -> None:
    result = run("keygen", "--help")
    assert result.returncode == 0, result.stderr
    for kind in ("hmac", "hash-key", "basic", "seal", "cert"):
        assert re.search(rf"^\s+{kind}\s+\S", result.stdout, re.M), kind
    missing = run("keygen")
    assert missing.returncode == 2
    assert "the following arguments are required: KIND" in missing.stderr


@pytest.mark.parametrize("kind", ["hmac", "cert"])
def test_keygen_refuses_days_under_one(kind: str, tmp_path: Path) -> None:
    result = run("keygen", kind, "--days", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert (result.stdout, list(tmp_path.iterdir())) == ("", [])
    assert "argument --days: 0 days: give at least 1" in result.stderr


def test_keygen_hmac_flags_still_work() -> None:
    result = run("keygen", "hmac", "--client", "billing", "--key-id", "billing-k1", "--days", "30")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", lines[0])
    table = tomllib.loads("\n".join(lines[1:]))["client"]["hmac_keys"][0]
    assert table["id"] == "billing-k1"
    assert table["secret"] == "env:SMSGW_HMAC_BILLING_K1"
    assert (table["expires"] - table["created"]).days == 30


def test_keygen_unknown_kind() -> None:
    result = run("keygen", "rsa")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


# -- version ---------------------------------------------------------------------------------------------


def test_version_is_the_package_version() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    result = run("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"smsgw {project['version']}\n", "")
    assert "--version" in run("--help").stdout


# -- demo ------------------------------------------------------------------------------------------------


@dataclass
class Demo:
    proc: asyncio.subprocess.Process
    lines: list[str]

    @property
    def curl(self) -> list[str]:
        return [line for line in self.lines if line.startswith("curl ")]

    @property
    def health_url(self) -> str:
        (line,) = [line for line in self.lines if line.startswith("# health: curl")]
        return line.split()[-1]

    async def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        # gateway/commands/demo.py prints "Stop with Ctrl-C." before it installs its signal handlers, so a
        # signal sent right away can hit Python's default handler (exit -2). Once the demo's event
        # loop has answered a request, the (synchronous) handler installation has happened.
        async with aiohttp.ClientSession() as session, session.get(self.health_url) as response:
            assert response.status == 200
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), TIMEOUT)


@contextlib.asynccontextmanager
async def demo(directory: Path, log: Path, env: Mapping[str, str] | None = None) -> AsyncIterator[Demo]:
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            *SMSGW,
            "demo",
            "--dir",
            str(directory),
            "--port",
            "0",
            "--admin-port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env,
        )
    try:
        lines: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            while not lines or lines[-1] != "Stop with Ctrl-C.":
                raw = await proc.stdout.readline()  # type: ignore[union-attr]
                assert raw, f"demo exited early:\n{read(log)}"
                lines.append(raw.decode().rstrip("\n"))
        yield Demo(proc, lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@dataclass
class CurlLine:
    cacert: str
    user: str
    password: str
    url: str
    form: dict[str, str]


def parse_curl(line: str) -> CurlLine:
    words = shlex.split(line)
    assert words[0] == "curl"
    options: dict[str, str] = {}
    form: dict[str, str] = {}
    urls = []
    it = iter(words[1:])
    for word in it:
        if word in ("--cacert", "-u"):
            options[word] = next(it)
        elif word in ("-d", "--data-urlencode"):
            name, _, value = next(it).partition("=")
            form[name] = value
        elif word.startswith("https://"):
            urls.append(word)
    (url,) = urls
    user, _, password = options["-u"].partition(":")
    return CurlLine(options["--cacert"], user, password, url, form)


async def post(line: CurlLine) -> tuple[int, Any, Mapping[str, str]]:
    ctx = ssl.create_default_context(cafile=line.cacert)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session,
        session.post(
            line.url, data=line.form, headers={"Authorization": basic(line.user, line.password)}
        ) as response,
    ):
        return response.status, await response.json(content_type=None), response.headers


async def test_demo_end_to_end(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    log = tmp_path / "demo.stderr"
    async with demo(directory, log) as running:
        assert len(running.curl) == 2, running.lines
        ok, refused = (parse_curl(line) for line in running.curl)

        # the printed lines name the ports actually bound (the config says port 0)
        port = urlsplit(ok.url).port
        admin_port = urlsplit(running.health_url).port
        assert port and admin_port and port != admin_port
        assert urlsplit(refused.url).port == port
        assert listening(port) and listening(admin_port)
        assert ok.cacert == str(directory / "cert.pem")
        assert ok.form == {"To": DEMO_NUMBER, "From": "MyBank", "Body": DEMO_BODY}

        async with aiohttp.ClientSession() as session, session.get(running.health_url) as response:
            assert response.status == 200

        status, answer, _ = await post(ok)
        assert status == 201, answer
        assert answer["sid"].startswith("SM")
        assert answer["body"] == DEMO_BODY

        status, answer, headers = await post(refused)
        assert status == 401
        assert answer["error"]["code"] == "unauthenticated"
        assert "WWW-Authenticate" in headers

        if shutil.which("curl"):  # the line itself, pasted into a shell
            pasted = await asyncio.to_thread(
                subprocess.run,
                ["bash", "-c", running.curl[0]],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            assert pasted.returncode == 0, pasted.stderr
            assert json.loads(pasted.stdout)["sid"].startswith("SM")

        assert await running.stop(signal.SIGINT) == 0

    # audit log: records for both requests, neither the body nor the number in clear text
    audit_text = (directory / "logs" / "audit.jsonl").read_text()
    records = [json.loads(line) for line in audit_text.splitlines()]
    assert {r.get("status") for r in records} >= {201, 401}
    logs = "".join(p.read_text() for p in (directory / "logs").iterdir())
    password = (directory / "secrets" / "client_password").read_text().strip()
    for secret in (DEMO_BODY, DEMO_NUMBER, DEMO_NUMBER[1:], "123456", password):
        assert secret not in logs
    hash_key = (directory / "secrets" / "log_hash_key").read_text().strip()
    digest = hmac.new(hash_key.encode(), DEMO_BODY.encode(), hashlib.sha256).hexdigest()
    assert any((r.get("body") or {}).get("hmac_sha256") == digest for r in records)

    # secrets (and the audit log) are readable by the owner only
    secrets_dir = directory / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in secrets_dir.iterdir())
    assert "key.pem" in files and "client_password" in files
    for path in secrets_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((directory / "logs" / "audit.jsonl").stat().st_mode) == 0o600
    assert password not in (directory / "config.toml").read_text()


#: Import names of the packages only the ``test`` and ``aws`` extras install (``make demo`` installs
#: neither), refused in the demo's process by a ``sitecustomize`` put first on its path.
_BLOCKER = """
import importlib.abc, sys
BLOCKED = frozenset({names!r})
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is not installed (test or aws extra)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def _extras_import_names() -> set[str]:
    from importlib.metadata import packages_distributions

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    dists = {
        re.split(r"[<>=!~\[; ]", requirement)[0].lower().replace("_", "-")
        for extra in ("test", "aws")
        for requirement in extras[extra]
    }
    return {
        name
        for name, owners in packages_distributions().items()
        if any(owner.lower().replace("_", "-") in dists for owner in owners)
    }


async def test_demo_runs_without_the_test_extra(tmp_path: Path) -> None:
    """``make demo`` installs the runtime dependencies only: the demo sends and refuses as usual
    with every package of the test (and aws) extra made unimportable."""
    blocked = _extras_import_names()
    assert {"trustme", "twilio", "hypothesis", "sslyze", "botocore"} <= blocked
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BLOCKER.format(names=sorted(blocked)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    probe = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "import trustme"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert "trustme is not installed" in probe.stderr  # the blocker is in force
    async with demo(tmp_path / "demo", tmp_path / "demo.stderr", env) as running:
        ok, refused = (parse_curl(line) for line in running.curl)
        assert (await post(ok))[0] == 201
        assert (await post(refused))[0] == 401
        assert await running.stop(signal.SIGINT) == 0
    assert "not installed" not in read(tmp_path / "demo.stderr")


def test_demo_on_a_taken_port_says_how_to_pick_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("demo", "--dir", str(tmp_path / "demo"), "--port", str(port), "--admin-port", "0")
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "cannot listen" in line]
    assert line.startswith("smsgw demo: cannot listen: ")
    assert line.endswith(
        '(try --port/--admin-port, --port 0 for free ports; through make: make demo DEMO_ARGS="--port 0")'
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_the_runtime_only_and_passes_demo_args(tmp_path: Path) -> None:
    """What ``make`` would run (``make -n``, nothing is run), in a copy of the Makefile: ``demo``
    installs smsgw without the test extra and hands DEMO_ARGS to ``smsgw demo``; ``test`` after it
    still installs the test extra; a second ``demo`` installs nothing."""
    root = Path(__file__).parents[1]
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(root / name, tmp_path / name)

    # run from `make test` too: the outer make's settings must not reach this one
    outer = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")
    env = {k: v for k, v in os.environ.items() if k not in outer}

    def planned(*args: str) -> list[str]:
        result = subprocess.run(
            ["make", "--no-print-directory", "-n", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    first = planned("demo", "DEMO_ARGS=--port 0 --admin-port 9001")
    installs = [line for line in first if " pip install " in line and "--upgrade pip" not in line]
    assert installs == [".venv/bin/python -m pip install -q -e ."]
    assert first[-1] == ".venv/bin/smsgw demo --port 0 --admin-port 9001"

    # as after that demo: the venv and the runtime stamp exist
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    sha = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes()).hexdigest()[:12]
    stamp = tmp_path / ".venv" / f".runtime-{sha}"
    stamp.touch()
    later = time.time() + 5  # newer than pyproject.toml, whatever the file system's time resolution
    os.utime(stamp, (later, later))
    assert ".venv/bin/python -m pip install -q -e '.[test]'" in planned("test")
    assert [line.strip() for line in planned("demo")] == [".venv/bin/smsgw demo"]


async def test_demo_second_run_reuses_certificate_and_secrets(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    log = tmp_path / "demo.stderr"
    kept = ("cert.pem", "secrets/key.pem", "secrets/client_password", "secrets/log_hash_key")
    async with demo(directory, log) as first:
        assert await first.stop(signal.SIGINT) == 0
    before = {name: (directory / name).read_bytes() for name in kept}

    async with demo(directory, log) as second:
        status, answer, _ = await post(parse_curl(second.curl[0]))
        assert status == 201, answer
        assert await second.stop(signal.SIGTERM) == 0
    assert {name: (directory / name).read_bytes() for name in kept} == before


def test_demo_ctrl_c_right_after_the_announcement_stops_cleanly(tmp_path: Path) -> None:
    """Deterministic version of the race: the demo's stdout pipe is full, so it is stuck writing the
    announcement when Ctrl-C arrives (an operator pressing Ctrl-C as soon as the text appears)."""
    port, admin_port = free_port(), free_port()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"\n" * 4096)
    os.set_blocking(write_end, True)
    proc = subprocess.Popen(
        [
            *SMSGW,
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
        ],
        stdout=write_end,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    output: list[bytes] = []
    with os.fdopen(read_end, "rb") as reader:
        drain = threading.Thread(target=lambda: output.append(reader.read()), daemon=True)
        try:
            wchan = Path(f"/proc/{proc.pid}/wchan")
            deadline = time.monotonic() + TIMEOUT
            while not (listening(admin_port) and "pipe_write" in wchan.read_text()):
                assert proc.poll() is None, "the demo exited before announcing itself"
                if time.monotonic() > deadline:
                    pytest.skip("cannot see the demo blocked on its stdout pipe (/proc/PID/wchan)")
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)  # the signal is handled while the announcement is still being written
            drain.start()
            code = proc.wait(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if drain.is_alive():
                drain.join(timeout=TIMEOUT)
    assert b"Stop with Ctrl-C." in b"".join(output)
    assert code == 0


# -- serve ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serve_runs_until_signalled(
    tmp_path: Path, pki: dict[str, Path], vendor: Vendor, sig: signal.Signals
) -> None:
    port, admin_port = free_port(), free_port()
    config = write_config(
        tmp_path / "gw",
        pki,
        vendor.base_url,
        {"server": {"listen": f"127.0.0.1:{port}"}, "admin": {"listen": f"127.0.0.1:{admin_port}"}},
    )
    out, err = tmp_path / "serve.stdout", tmp_path / "serve.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *SMSGW, "serve", "-c", str(config), stdout=stdout, stderr=stderr
        )
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(pki))) as session:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    assert proc.returncode is None, err.read_text()
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        async with session.get(f"http://127.0.0.1:{admin_port}/healthz") as response:
                            if response.status == 200:
                                break
                    await asyncio.sleep(0.1)
            form = {"To": "+37255512367", "From": "MyBank", "Body": "Your code is 654321"}
            async with session.post(
                f"https://127.0.0.1:{port}/2010-04-01/Accounts/{CLIENT_USER}/Messages.json",
                data=form,
                headers={"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)},
            ) as response:
                assert response.status == 201, await response.text()
        (seen,) = vendor.received
        assert seen.headers["Authorization"] == basic(VENDOR_SID, VENDOR_TOKEN)

        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not listening(port) and not listening(admin_port)

    logs_dir = tmp_path / "gw" / "logs"
    assert sorted(p.name for p in logs_dir.iterdir()) == ["access.jsonl", "audit.jsonl"]
    written = "".join(p.read_text() for p in logs_dir.iterdir()) + out.read_text() + err.read_text()
    vendor_basic = basic(VENDOR_SID, VENDOR_TOKEN).split()[1]
    for secret in (
        VENDOR_TOKEN,
        vendor_basic,
        HASH_KEY,
        CLIENT_PASSWORD,
        "Your code is 654321",
        "+37255512367",
    ):
        assert secret not in written
    assert any(
        json.loads(line).get("status") == 201 for line in (logs_dir / "audit.jsonl").read_text().splitlines()
    )


def test_serve_logs_warnings_and_tightens_log_modes_at_start(tmp_path: Path, pki: dict[str, Path]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o755)
    (logs / "audit.jsonl").touch()
    (logs / "audit.jsonl").chmod(0o644)
    with socket.socket() as taken:  # the listen fails after start has run its checks: a quick exit
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path,
            pki,
            "https://127.0.0.1:1",
            {"server": {"listen": f"127.0.0.1:{port}"}, "hsts": {"max_age_s": 600}},
        )
        result = run("serve", "-c", str(config))
    assert result.returncode == 1
    lines = [line.split(" ", 3)[-1] for line in result.stderr.splitlines()]  # without the timestamp
    lines = [line for line in lines if not line.startswith("smsgw: open-file limit")]
    assert lines[:4] == [
        f"smsgw: {config}: hsts.max_age_s: warning: 600 is under one year (31536000): "
        "browsers forget sooner that this host is HTTPS only",
        f"smsgw: {config}: logging.audit_log: warning: folder {logs} has mode 0755, wider than 0750; "
        "smsgw sets 0750 when it starts",
        f"smsgw: {config}: logging.audit_log: warning: file {logs / 'audit.jsonl'} has mode 0644, "
        "wider than 0600; smsgw sets 0600 when it starts",
        f"smsgw: tightened log file modes: {logs} 0755->0750, {logs / 'audit.jsonl'} 0644->0600",
    ]
    assert "WARNING smsgw:" in result.stderr.splitlines()[0]
    assert stat.S_IMODE(logs.stat().st_mode) == 0o750
    assert stat.S_IMODE((logs / "audit.jsonl").stat().st_mode) == 0o600
    assert VENDOR_TOKEN not in result.stderr and HASH_KEY not in result.stderr


def test_serve_cannot_listen_exits_1(tmp_path: Path, pki: dict[str, Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path, pki, "https://127.0.0.1:1", {"server": {"listen": f"127.0.0.1:{port}"}}
        )
        result = run("serve", "-c", str(config))
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
