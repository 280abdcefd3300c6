"""``make stack-check``: deploy/compose.yaml brought up with podman and checked end to end.

Two gateway replicas, Redis, the sandbox vendor and Prometheus start from the images ``make image``
made; the check waits (bounded) until every service is healthy, sends through both gateways until
the per-recipient limit they share through Redis refuses one, reloads one replica with
``smsgw reload`` (SIGHUP) and reads the new generation in its ``/readyz``, asks Prometheus whether
it scrapes both, runs ``smsgw audit verify`` inside each gateway, stops the stack and checks that
the gateways drained cleanly. Everything it started (containers, networks, volumes, the copy of
deploy/ with its generated secrets) is removed by id however it ends. Exit 0 only when every check
passed; the summary names each one.

Run by deploy/podman/stack-check.sh (which sets podman's configuration); standard library only,
plus podman-compose as a command.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent.parent
COPIED = ("compose.yaml", "config.toml", "prometheus.yml", "policies")
UP_TIMEOUT_S = 180.0  # podman-compose up (containers are created and started, not waited for)
HEALTHY_TIMEOUT_S = 180.0
SCRAPE_TIMEOUT_S = 90.0  # the scrape interval is 15 s
RELOAD_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 120.0  # stop_grace_period is 40 s
RECIPIENT = "+37255512367"
GATEWAYS = ("gateway1", "gateway2")
LOCAL_PORTS = {"SMSGW_GATEWAY1_PORT": 8443, "SMSGW_GATEWAY2_PORT": 8444, "SMSGW_PROMETHEUS_PORT": 9090}
START = time.monotonic()


class CheckFailed(Exception):
    """A check's finding, said in one line."""


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {message}", flush=True)


@dataclass
class Result:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    def check(self, name: str, func: Callable[[], str]) -> bool:
        """Runs one check; its failure is recorded and the next check still runs."""
        began = time.monotonic()
        say(f"checking: {name}")
        try:
            detail, ok = func(), True
        except CheckFailed as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # a surprise is a failed check, never a skipped clean-up
            detail, ok = f"{type(exc).__name__}: {exc}", False
        self.results.append(Result(name, ok, detail, time.monotonic() - began))
        say(f"{'PASS' if ok else 'FAIL'}: {name}: {detail}")
        return ok

    def summary(self) -> int:
        passed = sum(r.ok for r in self.results)
        failed = len(self.results) - passed
        print("\n==== stack-check summary ====")
        for r in self.results:
            print(f"{'PASS' if r.ok else 'FAIL'}  {r.name:<52} {r.seconds:5.1f}s  {r.detail}")
        print(f"total {time.monotonic() - START:.0f} s")
        print(f"stack-check: {passed} passed, {failed} failed")
        return 0 if failed == 0 and passed > 0 else 1


# --- podman --------------------------------------------------------------------------------------


Done = subprocess.CompletedProcess[str]


def run(args: list[str], timeout: float = COMMAND_TIMEOUT_S, check: bool = False) -> Done:
    """A command in its own process group, killed whole when it outlives ``timeout``."""
    with subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    result = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if check and result.returncode != 0:
        raise CheckFailed(f"{' '.join(args[:4])}… exited {result.returncode}: {last_line(err or out)}")
    return result


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def podman(*args: str, timeout: float = COMMAND_TIMEOUT_S, check: bool = True) -> str:
    return run(["podman", *args], timeout=timeout, check=check).stdout


@dataclass
class Stack:
    project: str
    folder: Path
    compose: list[str]

    def containers(self) -> dict[str, dict[str, object]]:
        """The project's containers by service name, from ``podman inspect``."""
        ids = podman("ps", "-a", "-q", "--filter", f"label=io.podman.compose.project={self.project}").split()
        if not ids:
            return {}
        found: dict[str, dict[str, object]] = {}
        for item in json.loads(podman("inspect", "--type", "container", *ids)):
            labels = item["Config"].get("Labels") or {}
            found[labels.get("com.docker.compose.service", item["Name"])] = item
        return found

    def cid(self, service: str) -> str:
        containers = self.containers()
        if service not in containers:
            raise CheckFailed(f"no container for service {service}")
        return str(containers[service]["Id"])

    def exec(self, service: str, *command: str, timeout: float = COMMAND_TIMEOUT_S) -> Done:
        return run(["podman", "exec", self.cid(service), *command], timeout=timeout)

    def admin_json(self, service: str, path: str) -> dict[str, object]:
        """An admin endpoint of a gateway (not published: read from inside its container)."""
        code = (
            "import json,sys,urllib.request,urllib.error\n"
            "try:\n r=urllib.request.urlopen('http://127.0.0.1:9000" + path + "',timeout=5)\n"
            "except urllib.error.HTTPError as e:\n r=e\n"
            "sys.stdout.write(r.read().decode())"
        )
        done = self.exec(service, "python", "-c", code)
        if done.returncode != 0:
            raise CheckFailed(f"{service} {path}: {last_line(done.stderr)}")
        return dict(json.loads(done.stdout))

    def logs(self, service: str) -> str:
        done = run(["podman", "logs", self.cid(service)], timeout=COMMAND_TIMEOUT_S)
        return done.stdout + done.stderr


def health_test(container: dict[str, object]) -> list[str]:
    config = container["Config"]
    assert isinstance(config, dict)
    check = config.get("Healthcheck") or {}
    return list(check.get("Test") or [])


# --- preparation ---------------------------------------------------------------------------------


def free_port(preferred: int) -> int:
    """The preferred loopback port when it is free, else one the kernel picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free loopback port")


def secrets_env() -> dict[str, str]:
    """Fresh values for every name of secrets.env.example: nothing of the example is reused."""
    names = []
    for line in (DEPLOY / "secrets.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            names.append(line.partition("=")[0])
    values = {name: secrets.token_urlsafe(32) for name in names}
    if "SMSGW_SANDBOX_ACCOUNT" in values:
        values["SMSGW_SANDBOX_ACCOUNT"] = "AC" + secrets.token_hex(16)
    return values


def prepare(folder: Path) -> dict[str, str]:
    for name in COPIED:
        source = DEPLOY / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copy2(source, folder / name)
    values = secrets_env()
    env_file = folder / "secrets.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env_file.chmod(0o600)
    # The containers' user (10001) reads the config and policies through the bind mounts.
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        if path != env_file:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return values


def recipient_limit() -> int:
    """The count of the deploy route's first per-recipient limit (e.g. ``10/hour`` → 10)."""
    for path in sorted((DEPLOY / "policies").glob("*.toml")):
        for route in tomllib.loads(path.read_text()).get("route", []):
            for limit in route.get("recipient_limits", []):
                return int(str(limit).split("/")[0])
    raise CheckFailed("deploy/policies has no route with recipient_limits")


# --- the checks ----------------------------------------------------------------------------------


def wait_healthy(stack: Stack) -> str:
    """Every service up: the one-shot certs job exited 0, the others running, and each with a
    health check healthy (podman 4.x without systemd runs no checks by itself: this runs them)."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    waiting: list[str] = []
    expected = {"certs", "redis", "sandbox", "gateway1", "gateway2", "prometheus"}
    while time.monotonic() < deadline:
        containers = stack.containers()
        missing = expected - set(containers)
        if missing:
            raise CheckFailed(f"no container for {', '.join(sorted(missing))}")
        waiting = []
        for service, item in sorted(containers.items()):
            state = item["State"]
            assert isinstance(state, dict)
            if service == "certs":
                if state["Status"] == "exited" and state["ExitCode"] != 0:
                    raise CheckFailed(f"certs exited {state['ExitCode']}: {last_line(stack.logs('certs'))}")
                if state["Status"] != "exited":
                    waiting.append("certs (running)")
                continue
            if state["Status"] != "running":
                if state["Status"] == "exited":
                    said = last_line(stack.logs(service))
                    raise CheckFailed(f"{service} exited {state['ExitCode']}: {said}")
                waiting.append(f"{service} ({state['Status']})")
                continue
            if health_test(item) and health_test(item)[0] != "NONE":
                done = run(["podman", "healthcheck", "run", str(item["Id"])], timeout=30)
                if done.returncode != 0:
                    waiting.append(f"{service} (not healthy yet)")
        if not waiting:
            # and both gateways ready: Redis reached (a send before that would be refused 503)
            for service in GATEWAYS:
                ready = stack.admin_json(service, "/readyz")
                if ready.get("status") != "ready":
                    waiting.append(
                        f"{service} (/readyz: {ready.get('status')}, storage {ready.get('storage')})"
                    )
        if not waiting:
            return (
                f"{len(containers)} containers: certs done, the rest running, every health check "
                "passes, both gateways ready"
            )
        time.sleep(2)
    raise CheckFailed(f"not healthy within {HEALTHY_TIMEOUT_S:.0f} s: {', '.join(waiting)}")


def check_health_checks(stack: Stack) -> str:
    """Defect: the sandbox and certs inherited the image's admin-port check and turned unhealthy."""
    containers = stack.containers()
    certs = health_test(containers["certs"])
    if certs and certs[0] != "NONE":
        raise CheckFailed(f"certs runs a health check it cannot pass: {certs}")
    sandbox = " ".join(health_test(containers["sandbox"]))
    if "9000" in sandbox or "8089" not in sandbox:
        raise CheckFailed(f"the sandbox's health check is not on its own port 8089: {sandbox}")
    status = podman("inspect", "--format", "{{.State.Health.Status}}", stack.cid("sandbox")).strip()
    if status != "healthy":
        raise CheckFailed(f"sandbox health is {status!r}")
    gateway = " ".join(health_test(containers["gateway1"]))
    if "9000/healthz" not in gateway:
        raise CheckFailed(f"the gateways lost the image's health check: {gateway}")
    return "certs: none; sandbox: its own port, healthy; gateways: the image's /healthz"


def check_hardening(stack: Stack) -> str:
    """Numeric non-root user and group, read-only root, no capabilities, no new privileges,
    published ports on loopback only."""
    containers = stack.containers()
    for service in (*GATEWAYS, "sandbox"):
        item = containers[service]
        config, host = item["Config"], item["HostConfig"]
        assert isinstance(config, dict) and isinstance(host, dict)
        if config.get("User") != "10001:10001":
            raise CheckFailed(f"{service} runs as {config.get('User')!r}, not 10001:10001")
        if not host.get("ReadonlyRootfs"):
            raise CheckFailed(f"{service}: the root filesystem is writable")
        opts = " ".join(host.get("SecurityOpt") or [])
        if "no-new-privileges" not in opts:
            raise CheckFailed(f"{service}: no-new-privileges missing ({opts})")
        status = stack.exec(service, "cat", "/proc/1/status").stdout
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        caps = {name: fields.get(name, "").strip() for name in ("CapEff", "CapBnd")}
        if any(value.strip("0") for value in caps.values()):
            raise CheckFailed(f"{service}: capabilities left: {caps}")
        if fields.get("NoNewPrivs", "").strip() != "1":
            raise CheckFailed(f"{service}: NoNewPrivs is {fields.get('NoNewPrivs')}")
        wrote = stack.exec(service, "touch", "/opt/smsgw/x")
        if wrote.returncode == 0:
            raise CheckFailed(f"{service}: wrote into the image's files")
    for service in (*GATEWAYS, "prometheus"):
        host = containers[service]["HostConfig"]
        assert isinstance(host, dict)
        bindings = [b for ports in (host.get("PortBindings") or {}).values() for b in ports or []]
        if not bindings or any(b.get("HostIp") != "127.0.0.1" for b in bindings):
            raise CheckFailed(f"{service} publishes beyond loopback: {bindings}")
    return (
        "gateways and sandbox: 10001:10001, read-only root, CapEff/CapBnd 0, NoNewPrivs 1; ports on 127.0.0.1"
    )


def check_user_and_log_folder(stack: Stack) -> str:
    """Defect: the group was gid 999 while compose used 10001:10001, a group that did not exist, and
    /var/log/smsgw was 0755, so every start warned."""
    for service in GATEWAYS:
        ident = stack.exec(service, "id").stdout.strip()
        if not ident.startswith("uid=10001(smsgw) gid=10001(smsgw)"):
            raise CheckFailed(f"{service}: id says {ident!r}")
        folder = stack.exec(service, "stat", "-c", "%u:%g %a", "/var/log/smsgw").stdout.strip()
        if folder != "10001:10001 750":
            raise CheckFailed(f"{service}: /var/log/smsgw is {folder!r}, not '10001:10001 750'")
        wide = [line for line in stack.logs(service).splitlines() if "wider than" in line]
        if wide:
            raise CheckFailed(f"{service} warns at start: {wide[0][:200]}")
    return "id: uid=10001(smsgw) gid=10001(smsgw); /var/log/smsgw 10001:10001 0750; no 'wider than' warning"


def gateway_context(stack: Stack, folder: Path) -> ssl.SSLContext:
    pem = stack.exec("gateway1", "cat", "/etc/smsgw/certs/gateway.pem")
    if pem.returncode != 0 or "BEGIN CERTIFICATE" not in pem.stdout:
        raise CheckFailed(f"no gateway certificate: {last_line(pem.stderr)}")
    (folder / "gateway.pem").write_text(pem.stdout)
    return ssl.create_default_context(cafile=str(folder / "gateway.pem"))


def send(port: int, context: ssl.SSLContext, password: str, marker: str) -> tuple[int, dict[str, Any], str]:
    account = "AC0000000000000000000000000example"
    body = urllib.parse.urlencode({"To": RECIPIENT, "From": "MyBank", "Body": f"hello {marker}"}).encode()
    request = urllib.request.Request(
        f"https://localhost:{port}/2010-04-01/Accounts/{account}/Messages.json", data=body, method="POST"
    )
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    token = base64.b64encode(f"{account}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=20, context=context) as answer:  # noqa: S310 (https)
            return answer.status, json.loads(answer.read() or b"{}"), answer.headers.get("Retry-After", "")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), exc.headers.get("Retry-After", "")


def check_shared_limit(stack: Stack, folder: Path, ports: dict[str, int], password: str, marker: str) -> str:
    """Sends alternate between the replicas: the limit's count is accepted, the next send is
    refused 429 rate_limited, though neither replica alone saw the count."""
    limit = recipient_limit()
    context = gateway_context(stack, folder)
    per_gateway = dict.fromkeys(GATEWAYS, 0)
    for i in range(limit):
        gateway = GATEWAYS[i % 2]
        status, answer, _ = send(ports[gateway], context, password, marker)
        if status not in (200, 201):
            raise CheckFailed(f"send {i + 1} through {gateway}: {status} {answer.get('error', answer)}")
        per_gateway[gateway] += 1
    gateway = GATEWAYS[limit % 2]
    status, answer, retry_after = send(ports[gateway], context, password, marker)
    error = answer.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    if status != 429 or code != "rate_limited" or not retry_after:
        raise CheckFailed(f"send {limit + 1} through {gateway}: {status} {code}, Retry-After {retry_after!r}")
    counts = ", ".join(f"{g} {n}" for g, n in per_gateway.items())
    return (
        f"{limit} accepted ({counts}), send {limit + 1} via {gateway}: 429 rate_limited, "
        f"Retry-After {retry_after}"
    )


def check_reload(stack: Stack) -> str:
    """Defect: the pid file's tmpfs came up root-owned, so ``smsgw reload`` exited 2."""
    before = stack.admin_json("gateway1", "/readyz").get("config_generation")
    if not isinstance(before, int):
        raise CheckFailed(f"/readyz has no config_generation: {before!r}")
    done = stack.exec("gateway1", "smsgw", "reload", "-c", "/etc/smsgw/config.toml", timeout=60)
    if done.returncode != 0:
        raise CheckFailed(f"smsgw reload exited {done.returncode}: {last_line(done.stderr or done.stdout)}")
    pid_file = tomllib.loads((DEPLOY / "config.toml").read_text())["server"]["pid_file"]
    owner = stack.exec("gateway1", "stat", "-c", "%u:%g", pid_file).stdout.strip()
    if owner != "10001:10001":
        raise CheckFailed(f"no pid file written by the gateway at {pid_file} ({owner or 'missing'})")
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    seen: object = before
    while time.monotonic() < deadline:
        answers = [stack.admin_json("gateway1", "/readyz") for _ in range(4)]  # either worker answers
        seen = sorted({str(a.get("config_generation")) for a in answers})
        if all(a.get("config_generation") == before + 1 and a.get("status") == "ready" for a in answers):
            other = stack.admin_json("gateway2", "/readyz").get("config_generation")
            return f"smsgw reload (SIGHUP): gateway1 generation {before} → {before + 1}, gateway2 {other}"
        time.sleep(0.5)
    raise CheckFailed(f"/readyz generation stayed {seen} (was {before}) for {RELOAD_TIMEOUT_S:.0f} s")


def check_prometheus(port: int) -> str:
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/api/v1/targets"
            with urllib.request.urlopen(url, timeout=5) as answer:
                targets = json.loads(answer.read())["data"]["activeTargets"]
        except (OSError, ValueError, KeyError):
            targets = []
        seen = sorted(f"{t['labels'].get('instance')}={t.get('health')}" for t in targets)
        up = {t["labels"].get("instance") for t in targets if t.get("health") == "up"}
        if up >= {"gateway1:9000", "gateway2:9000"}:
            return f"targets: {', '.join(seen)}"
        time.sleep(2)
    raise CheckFailed(f"not both up within {SCRAPE_TIMEOUT_S:.0f} s: {seen or 'no targets'}")


def check_audit(stack: Stack) -> str:
    found = []
    for service in GATEWAYS:
        verify = "smsgw audit verify -c /etc/smsgw/config.toml /var/log/smsgw/*.jsonl"
        done = stack.exec(service, "sh", "-c", verify, timeout=60)
        if done.returncode != 0:
            said = last_line(done.stderr or done.stdout)
            raise CheckFailed(f"{service}: audit verify exited {done.returncode}: {said}")
        records = [line for line in done.stdout.splitlines() if line.startswith("records:")]
        found.append(f"{service} {records[0].split(':', 1)[1].strip() if records else '?'} records")
    return "smsgw audit verify passes inside both: " + ", ".join(found)


def check_no_leak(stack: Stack, marker: str) -> str:
    """Neither the number nor the body reaches a log: the containers' output or the audit files."""
    digits = RECIPIENT.lstrip("+")
    for service in (*GATEWAYS, "sandbox"):
        text = stack.logs(service)
        if service in GATEWAYS:
            text += stack.exec(service, "sh", "-c", "cat /var/log/smsgw/*.jsonl").stdout
        for needle in (digits, marker):
            if needle in text:
                raise CheckFailed(f"{service}'s logs hold {'the number' if needle == digits else 'the body'}")
    return "no recipient number or body marker in the gateways' and the sandbox's logs or the audit files"


def check_stop(stack: Stack) -> str:
    """compose down: SIGTERM, the gateways drain and exit 0 (not killed at the grace period)."""
    ids = {s: str(c["Id"]) for s, c in stack.containers().items()}
    done = run([*stack.compose, "stop"], timeout=STOP_TIMEOUT_S)
    if done.returncode != 0:
        raise CheckFailed(f"compose stop exited {done.returncode}: {last_line(done.stderr)}")
    codes = {}
    for service in GATEWAYS:
        state = json.loads(podman("inspect", "--type", "container", ids[service]))[0]["State"]
        if state["Status"] != "exited":
            raise CheckFailed(f"{service} is {state['Status']} after stop")
        codes[service] = state["ExitCode"]
    if any(codes.values()):
        raise CheckFailed(f"exit codes after SIGTERM: {codes}")
    running = podman("ps", "-q", "--filter", f"label=io.podman.compose.project={stack.project}").split()
    if running:
        raise CheckFailed(f"{len(running)} containers still running")
    return "every container stopped; the gateways exited 0 after their drain"


# --- clean-up ------------------------------------------------------------------------------------


def cleanup(project: str) -> str:
    """Removes the project's containers, pods, volumes and networks, each by id, and says what is
    left (nothing, when it worked). Containers go first and in passes: podman refuses to remove
    one that another still depends on."""
    label = f"label=io.podman.compose.project={project}"
    listings = {
        "containers": ["ps", "-a", "-q", "--filter", label],
        "pods": ["pod", "ps", "-q", "--filter", label],
        "volumes": ["volume", "ls", "-q", "--filter", label],
        "networks": ["network", "ls", "-q", "--filter", label],
    }
    removals = {
        "containers": ["rm", "-f", "-v", "--depend", "-t", "5"],
        "pods": ["pod", "rm", "-f"],
        "volumes": ["volume", "rm", "-f"],
        "networks": ["network", "rm", "-f"],
    }
    removed: dict[str, set[str]] = {kind: set() for kind in listings}
    for kind, listing in listings.items():
        for _ in range(3):
            try:
                ids = podman(*listing, check=False).split()
                if not ids:
                    break
                run(["podman", *removals[kind], *ids], timeout=120)
                removed[kind] |= set(ids)
            except (subprocess.TimeoutExpired, OSError) as exc:
                say(f"clean-up of {kind}: {exc}")
    left = []
    for kind, listing in listings.items():
        try:
            ids = podman(*listing, check=False).split()
        except (subprocess.TimeoutExpired, OSError):
            ids = ["?"]
        if ids:
            left.append(f"{len(ids)} {kind} ({' '.join(ids)})")
    done = ", ".join(f"{len(ids)} {kind}" for kind, ids in removed.items())
    if left:
        raise CheckFailed(f"removed {done}; LEFT BEHIND: {'; '.join(left)}")
    return f"removed {done}; nothing of the project is left"


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP end the check like Ctrl-C does, so the clean-up still runs."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def main() -> int:
    compose_cmd = os.environ.get("SMSGW_COMPOSE", "podman-compose")
    image = os.environ.get("SMSGW_IMAGE", "smsgw:local")
    if shutil.which(compose_cmd) is None:
        print(f"stack-check: {compose_cmd} is not installed (pip install podman-compose)", file=sys.stderr)
        return 2
    if run(["podman", "image", "exists", image]).returncode != 0:
        print(f"stack-check: no image {image}: run `make image` first", file=sys.stderr)
        return 2
    project = f"smsgw-check-{secrets.token_hex(3)}"
    report = Report()
    folder = Path(tempfile.mkdtemp(prefix="smsgw-stack.", dir="/var/tmp"))
    ports = {name: free_port(default) for name, default in LOCAL_PORTS.items()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    os.environ.update(env)
    compose = [compose_cmd, "--in-pod", "false", "-p", project, "-f", str(folder / "compose.yaml")]
    stack = Stack(project, folder, compose)
    marker = f"stack-check-marker-{secrets.token_hex(6)}"
    gateway_ports = {"gateway1": ports["SMSGW_GATEWAY1_PORT"], "gateway2": ports["SMSGW_GATEWAY2_PORT"]}
    say(f"project {project}; host ports {ports}; files in {folder}")
    try:
        with stopped_by_signals():
            values = prepare(folder)
            password = values["SMSGW_EXAMPLE_CLIENT_PASSWORD"]

            def up() -> str:
                done = run([*compose, "up", "-d", "--no-build"], timeout=UP_TIMEOUT_S)
                if done.returncode != 0:
                    raise CheckFailed(f"exited {done.returncode}: {last_line(done.stderr or done.stdout)}")
                return f"{len(stack.containers())} containers created"

            checks: list[tuple[str, Callable[[], str]]] = [
                ("every service healthy", lambda: wait_healthy(stack)),
                ("health checks fit each service (sandbox, certs)", lambda: check_health_checks(stack)),
                ("hardened: user, read-only, caps, no-new-privileges", lambda: check_hardening(stack)),
                ("group 10001 exists; log folder 0750", lambda: check_user_and_log_folder(stack)),
                (
                    "a limit shared through Redis across both gateways",
                    lambda: check_shared_limit(stack, folder, gateway_ports, password, marker),
                ),
                ("smsgw reload in a container; /readyz generation", lambda: check_reload(stack)),
                (
                    "Prometheus scrapes both gateways",
                    lambda: check_prometheus(ports["SMSGW_PROMETHEUS_PORT"]),
                ),
                ("smsgw audit verify inside the gateways", lambda: check_audit(stack)),
                ("no number or body in any log", lambda: check_no_leak(stack, marker)),
                ("the stack stops cleanly", lambda: check_stop(stack)),
            ]
            if report.check("compose up", up):
                # each check runs even when one before it failed: every finding is reported
                for name, func in checks:
                    report.check(name, func)
            if not all(r.ok for r in report.results):
                dump_logs(stack)
    except KeyboardInterrupt as exc:
        report.results.append(Result("interrupted", False, str(exc) or "Ctrl-C", 0.0))
    finally:
        # the clean-up is bounded by its commands' timeouts; a second Ctrl-C does not cut it short
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        report.check("clean-up by id", lambda: cleanup(project))
        shutil.rmtree(folder, ignore_errors=True)
    return report.summary()


def dump_logs(stack: Stack) -> None:
    """The last lines of every container's output, for the person reading a failure."""
    try:
        containers = stack.containers()
    except (CheckFailed, subprocess.TimeoutExpired, OSError):
        return
    for service in sorted(containers):
        try:
            lines = stack.logs(service).strip().splitlines()[-15:]
        except (CheckFailed, subprocess.TimeoutExpired, OSError):
            continue
        print(f"---- {service}: last {len(lines)} lines of its output ----")
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
