"""What one benchmark run starts: the stand-in vendor, Redis, the bare proxy and the gateways.

Every process is started in a session of its own and stopped through its process group (nginx's
worker and the gateway's forked workers go with it); :class:`Stack` stops all of them and removes
its temporary folder however the run ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from bench.servers import VENDOR_ANSWER, VENDOR_SID

ROOT = Path(__file__).resolve().parent.parent

#: The gateway-issued account id in the client's path; the gateway puts VENDOR_SID upstream.
CLIENT_ACCOUNT = "AC0000000000000000000000000bench"
JWT_ISSUER = "https://auth.bench.invalid/"
#: The bench client's RFC 9421 key (``[[client.hmac_keys]]``); its secret is made per run.
HMAC_KEY_ID = "bench-hmac"
JWT_SUBJECT = "bench-svc"
#: Outside 127.0.0.0/8 these networks are never contacted: they only make the allowlist realistic.
CLIENT_NETWORKS = ("127.0.0.0/8", "10.20.0.0/16", "192.168.40.0/24", "172.20.0.0/14", "2001:db8::/32")


class BenchError(RuntimeError):
    """A run that cannot give a meaningful number (a refused request, a process that died)."""


def free_port() -> int:
    """A loopback port nobody listens on (bound and released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited ({proc.returncode}) before it listened:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


@dataclass
class Process:
    """A started server: stopped with SIGTERM to its process group, then SIGKILL."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace: float = 10) -> None:
        """Once: after that its process group id may belong to someone else."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):  # stragglers in its group (forked workers)
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited ({self.proc.returncode}):\n{tail(self.log)}")


@dataclass
class Gateway:
    name: str
    process: Process
    port: int
    admin_port: int
    folder: Path
    workers: int
    loop_report: Path

    def loops(self) -> list[str]:
        try:
            return [line.split(" ", 1)[1] for line in self.loop_report.read_text().splitlines()]
        except OSError:
            return []

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read().decode()

    def audit_records(self) -> int:
        """Lines in every audit file (each worker's, rotated ones too)."""
        total = 0
        for path in (self.folder / "logs").glob("audit*.jsonl*"):
            with path.open("rb") as f:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda f=f: f.read(1 << 20), b""))
        return total


@dataclass
class Stack:
    """The run's temporary folder and every process started in it; a context manager."""

    use_uvloop: bool
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="smsgw-bench-")))
    processes: list[Process] = field(default_factory=list)
    token: str = ""
    hmac_secret: str = ""

    def __post_init__(self) -> None:
        from gateway.commands.demo import make_self_signed

        make_self_signed(self.folder / "cert.pem", self.folder / "key.pem")
        self.cafile = self.folder / "cert.pem"
        self.token = self._jwt_material()
        from gateway.commands.keygen import random_token

        self.hmac_secret = random_token(32)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- processes ---------------------------------------------------------------------------

    def live_pids(self) -> list[int]:
        return [p.pid for p in self.processes if not p.stopped and p.proc.poll() is None]

    def spawn(self, name: str, argv: list[str], cwd: Path | None = None) -> Process:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            }
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if name.startswith("bare") else out,
                stderr=out,
                cwd=cwd or ROOT,
                env=env,
                start_new_session=True,
            )
        process = Process(name, proc, log)
        self.processes.append(process)
        return process

    def python(self, mode: str, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.servers",
            mode,
            *args,
            *(["--uvloop"] if self.use_uvloop else []),
        ]

    def start_vendor(self, use_nginx: bool = True) -> tuple[str, str]:
        """nginx when installed (and wanted), else the asyncio stand-in; its URL and what it is."""
        port = free_port()
        nginx = find_nginx() if use_nginx else None
        if nginx:
            conf = self._nginx_conf(port)
            process = self.spawn(
                "vendor", [nginx, "-p", str(conf.parent), "-c", str(conf), "-e", "error.log"]
            )
            what = "nginx " + nginx_version(nginx)
        else:
            process = self.spawn("vendor", self.python("vendor", "--port", str(port)))
            what = "asyncio stand-in" + (" (nginx is not installed)" if use_nginx else "")
        wait_for_port(port, process.proc, "the vendor", process.log)
        return f"http://127.0.0.1:{port}", what

    def _nginx_conf(self, port: int) -> Path:
        root = self.folder / "nginx"
        (root / "tmp").mkdir(parents=True)
        temps = "\n".join(
            f"    {kind}_temp_path {root / 'tmp' / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = root / "nginx.conf"
        conf.write_text(
            f"""daemon off;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temps}
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=1024;
        location ~ ^/2010-04-01/Accounts/[^/]+/Messages\\.json$ {{
            limit_except POST {{ deny all; }}
            default_type application/json;
            return 201 '{VENDOR_ANSWER}';
        }}
        location / {{ return 404; }}
    }}
}}
"""
        )
        return conf

    def start_redis(self) -> tuple[int, Process]:
        """Our own redis-server on a free port, no persistence; never the one on 6379."""
        server = shutil.which("redis-server")
        if not server:
            raise BenchError(
                "redis-server is missing: install it (Debian: sudo apt-get install redis-server)"
            )
        port = free_port()
        assert port != 6379
        folder = self.folder / "redis"
        folder.mkdir()
        process = self.spawn(
            "redis",
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(folder), "--logfile", str(folder / "redis.log")],
        )  # fmt: skip
        wait_for_port(port, process.proc, "redis-server", folder / "redis.log")
        return port, process

    def start_bare(self, vendor_url: str) -> tuple[int, Process, str]:
        port = free_port()
        process = self.spawn(
            "bare",
            self.python(
                "bare", "--port", str(port), "--vendor", vendor_url,
                "--cert", str(self.cafile), "--key", str(self.folder / "key.pem"),
            ),
        )  # fmt: skip
        assert process.proc.stdout is not None
        line = process.proc.stdout.readline().decode().split()
        if not line or line[0] != "ready":
            process.proc.wait(timeout=5)
            raise BenchError(f"the bare proxy did not start:\n{tail(process.log)}")
        wait_for_port(port, process.proc, "the bare proxy", process.log)
        return port, process, line[1]

    def start_gateway(self, name: str, vendor_url: str, storage: str, workers: int = 1) -> Gateway:
        folder = self.folder / name
        port, admin_port = free_port(), free_port()
        config = write_gateway_config(
            folder, self.folder, vendor_url, storage, port, admin_port, workers, self.hmac_secret
        )
        report = folder / "loops.txt"
        process = self.spawn(
            name, self.python("gateway", "--config", str(config), "--loop-report", str(report)), cwd=folder
        )
        gw = Gateway(name, process, port, admin_port, folder, workers, report)
        wait_for_port(port, process.proc, f"the gateway ({name})", process.log)
        deadline = time.monotonic() + 30
        while len(gw.loops()) < workers or not self._ready(admin_port):
            process.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"the gateway ({name}) was not ready within 30 s:\n{tail(process.log)}")
            time.sleep(0.1)
        return gw

    @staticmethod
    def _ready(admin_port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    # -- identity ----------------------------------------------------------------------------

    def _jwt_material(self) -> str:
        """An RS256 key pair made here: the public key is the issuer's ``public_key_file``, the
        token (valid for a day, so it outlives any run) is what the client sends every time."""
        import jwt
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.folder / "jwt-issuer.pem").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        now = int(time.time())
        claims = {
            "iss": JWT_ISSUER,
            "aud": "smsgw",
            "sub": JWT_SUBJECT,
            "scope": "sms:send otp:send",
            "iat": now,
            "exp": now + 86400,
        }
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench-1"})

    def tls_client(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cafile))
        ctx.check_hostname = False
        return ctx


def find_nginx() -> str | None:
    """Debian puts nginx in /usr/sbin, which is not on a normal user's PATH."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def nginx_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10).stderr
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip().rsplit("/", 1)[-1]


def write_gateway_config(
    folder: Path,
    shared: Path,
    vendor_url: str,
    storage: str,
    port: int,
    admin_port: int,
    workers: int,
    hmac_secret: str,
) -> Path:
    """A production-shaped config: JWT RS256 (and an RFC 9421 key for the signed load), an IP
    allowlist, three rate limits, OTP caps, hashed bodies and both logs on disk. Limits are set
    high enough never to refuse in a run."""
    from gateway.commands.keygen import random_token

    (folder / "policies").mkdir(parents=True)
    (folder / "secrets").mkdir(mode=0o700)
    for name, value in (
        ("vendor_token", "bench-vendor-token-" + random_token(12)),
        ("hash_key", random_token(32)),
        ("hmac_key", hmac_secret),
    ):
        (folder / "secrets" / name).write_text(value)
        (folder / "secrets" / name).chmod(0o600)
    for name in ("cert.pem", "key.pem", "jwt-issuer.pem"):
        shutil.copy(shared / name, folder / name)
    (folder / "key.pem").chmod(0o600)
    networks = ", ".join(f'"{n}"' for n in CLIENT_NETWORKS)
    (folder / "config.toml").write_text(
        f"""[server]
listen = "127.0.0.1:{port}"
workers = {workers}
pid_file = ""
shutdown_timeout_s = 2

[server.tls]
cert_file = "cert.pem"
key_file = "key.pem"

[admin]
listen = "127.0.0.1:{admin_port}"

[upstream]
provider = "twilio"
base_url = "{vendor_url}"

[upstream.credentials]
type = "basic"
username = "{VENDOR_SID}"
password = "file:secrets/vendor_token"

[storage]
url = "{storage}"

[logging]
access_log = "logs/access.jsonl"
audit_log = "logs/audit.jsonl"
body = "hash"
recipient = "mask"
hash_key = "file:secrets/hash_key"

[auth.jwt]
[[auth.jwt.issuers]]
issuer = "{JWT_ISSUER}"
audience = "smsgw"
public_key_file = "jwt-issuer.pem"
algorithms = ["RS256"]

[policies]
dir = "policies"
"""
    )
    (folder / "policies" / "bench.toml").write_text(
        f"""[[client]]
id = "bench"
scopes = ["sms:send", "otp:send"]
jwt_subject = "{JWT_SUBJECT}"
jwt_issuer = "{JWT_ISSUER}"
ip_allow = [{networks}]
senders = ["MyBank"]
countries = ["EE", "LV", "LT", "FI"]
rate_limits = ["10000000/minute"]

[[client.hmac_keys]]
id = "{HMAC_KEY_ID}"
secret = "file:{folder / "secrets" / "hmac_key"}"
created = {date.today().isoformat()}
expires = {(date.today() + timedelta(days=30)).isoformat()}

[[client.basic]]
username = "{CLIENT_ACCOUNT}"
password_sha256 = "{hashlib.sha256(random_token(32).encode()).hexdigest()}"

[[route]]
name = "twilio-send"
methods = ["POST"]
path = "/2010-04-01/Accounts/{{account}}/Messages.json"
kind = "sms"
auth = ["jwt", "hmac", "basic"]
scopes = ["sms:send"]
rate_limits = ["10000000/minute"]
recipient_limits = ["100000/minute"]

[route.otp]
detect = '(?i)\\b(code|passcode|otp)\\b\\D{{0,20}}\\d{{4,8}}\\b'
max_sends = 3
window = "15 minutes"
min_interval = "30 seconds"

[[route]]
name = "verify-start"
methods = ["POST"]
path = "/v2/Services/{{service}}/Verifications"
kind = "otp"
auth = ["jwt"]
scopes = ["otp:send"]
recipient_limits = ["10/hour"]

[route.otp]
max_sends = 3
window = "15 minutes"
min_interval = "30 seconds"
"""
    )
    return folder / "config.toml"
