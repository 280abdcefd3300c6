"""The load (wrk with a Twilio-shaped form POST) and what is read from /proc and Redis around it."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bench.stack import CLIENT_ACCOUNT, BenchError

PATH = f"/2010-04-01/Accounts/{CLIENT_ACCOUNT}/Messages.json"
#: Not an OTP (the route's detect pattern runs on it and does not match), so the OTP caps are
#: consulted but never count: the run measures plain sends that are never refused.
TEXT = "Your November statement is ready. Reply STOP to opt out."
#: Recipients +3725551xxxx: 10,000 numbers, cycled, so the per-recipient limit keeps many keys.
RECIPIENTS = 10_000


def form_body(index: int) -> str:
    return f"To=%2B3725551{index:04d}&From=MyBank&Body={quote(TEXT, safe='')}"


LUA = """-- Written by bench/run.py: a Twilio-shaped form POST with a JWT, recipients cycled.
local path = "@PATH@"
local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = "Bearer @TOKEN@",
}
local prepared = {}
local count = @COUNT@
local next_index = 0

function init(args)
  for k = 0, count - 1 do
    local body = string.format("To=%%2B3725551%04d&From=MyBank&Body=@TEXT@", k)
    prepared[k + 1] = wrk.format("POST", path, headers, body)
  end
end

function request()
  next_index = next_index % count + 1
  return prepared[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def write_script(folder: Path, token: str) -> Path:
    script = folder / "send.lua"
    text = (
        LUA.replace("@PATH@", PATH)
        .replace("@TOKEN@", token)
        .replace("@COUNT@", str(RECIPIENTS))
        .replace("@TEXT@", quote(TEXT, safe="").replace("%", "%%"))
    )
    script.write_text(text)
    return script


SIGNED_LUA = """-- Written by bench/run.py: RFC 9421 signed sends, each signed once (its own nonce) before the
-- run and sent once; wrk cycles through the file, which holds more requests than the run sends.
local path = "@PATH@"
local prepared = {}
local next_index = 0

function init(args)
  for line in io.lines("@FILE@") do
    local k, digest, input, signature = line:match("^(%d+)\t([^\t]+)\t([^\t]+)\t([^\t]+)$")
    local body = string.format("To=%%2B3725551%04d&From=MyBank&Body=@TEXT@", tonumber(k))
    local headers = {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Content-Digest"] = digest,
      ["Signature-Input"] = input,
      ["Signature"] = signature,
    }
    prepared[#prepared + 1] = wrk.format("POST", path, headers, body)
  end
end

function request()
  next_index = next_index % #prepared + 1
  return prepared[next_index]
end
""" + LUA[LUA.index("function done(") :]


class SignedLoad:
    """The bench's sends signed with RFC 9421 (``gateway.core.signing``, as a client would), each
    with its own nonce: a file of pre-signed requests and a wrk script that sends each once.

    Signatures are made just before each run: the gateway accepts ``created`` within 300 s, and
    with memory storage only from the second it started. ``count`` must exceed what the run
    sends, or wrk would come round to a used nonce (a 401, which stops the bench)."""

    def __init__(self, folder: Path, url: str, key_id: str, secret: str) -> None:
        self.folder, self.url, self.key_id, self.secret = folder, url, key_id, secret
        self.runs = 0

    def headers(self, index: int) -> dict[str, str]:
        from gateway.core.signing import sign

        body = form_body(index).encode()
        return sign("POST", self.url + PATH, body, key_id=self.key_id, secret=self.secret)

    def script(self, count: int) -> Path:
        self.runs += 1
        data = self.folder / f"signed-{self.runs}.tsv"
        with data.open("w") as out:
            for n in range(count):
                k = n % RECIPIENTS
                h = self.headers(k)
                out.write(f"{k}\t{h['Content-Digest']}\t{h['Signature-Input']}\t{h['Signature']}\n")
        previous = self.folder / f"signed-{self.runs - 1}.tsv"
        previous.unlink(missing_ok=True)  # a used file is worthless: its nonces are spent
        script = self.folder / "signed.lua"
        script.write_text(
            SIGNED_LUA.replace("@PATH@", PATH)
            .replace("@FILE@", str(data))
            .replace("@TEXT@", quote(TEXT, safe="").replace("%", "%%"))
        )
        return script


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk_argv(url: str, script: Path, connections: int, seconds: float) -> list[str]:
    """One wrk thread: it keeps up with any contender here, and leaves the most CPU to them."""
    binary = shutil.which("wrk")
    if not binary:
        raise BenchError("wrk is missing: install it (Debian: sudo apt-get install wrk) or run `make bench`")
    return [
        binary, "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s",
        "--timeout", "5s", "--latency", "-s", str(script), url,
    ]  # fmt: skip


def parse_wrk(returncode: int, stdout: str, stderr: str) -> Result:
    """The ``done()`` line of the Lua script; wrk counts every answer of status 400 or more as a
    ``status`` error."""
    match = re.search(r"^BENCH (\{.*\})$", stdout, re.M)
    if returncode != 0 or not match:
        raise BenchError(f"wrk failed ({returncode}):\n{stdout}\n{stderr}")
    data = json.loads(match[1])
    errors = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")}
    return Result(
        int(data["requests"]), data["duration_us"] / 1e6, data["p50_us"] / 1e3, data["p99_us"] / 1e3, errors
    )


def wrk(
    url: str, script: Path, connections: int, seconds: float, during: Callable[[], None] | None = None
) -> Result:
    """One wrk run, bounded: killed a minute after its own duration. ``during`` is called once,
    a third of the way in, while every connection is open."""
    proc = subprocess.Popen(
        wrk_argv(url, script, connections, seconds), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        if during is not None:
            time.sleep(seconds / 3)
            if proc.poll() is None:
                during()
        stdout, stderr = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + 60:.0f} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return parse_wrk(proc.returncode, stdout, stderr)


# --------------------------------------------------------------------------- /proc


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a gateway's supervisor and its forked workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_mib(pid: int) -> float:
    """VmRSS of the process and its descendants, MiB."""
    total_kib = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def connections_by_process(pid: int, port: int) -> list[int]:
    """Established connections to local ``port`` held by each process of ``pid``'s tree (largest
    first): how SO_REUSEPORT spread a run's connections over the workers."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    counts = []
    for p in process_tree(pid):
        try:
            links = [os.readlink(f"/proc/{p}/fd/{fd}") for fd in os.listdir(f"/proc/{p}/fd")]
        except OSError:
            continue
        held = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
        if held:
            counts.append(held)
    return sorted(counts, reverse=True)


def open_fds(pid: int) -> int:
    """Open file descriptors of the process and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            continue
    return total


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds, over every core since boot, that the machine spent busy (user, nice, system,
    irq, softirq) and that its hypervisor gave to someone else (steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds of these processes, their live descendants and the children they reaped."""
    ticks = 0
    for root in pids:
        for p in process_tree(root):
            try:
                rest = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += sum(int(x) for x in rest[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """The CPU the bench did not get while it measured: what processes outside it used, and what
    the hypervisor gave to other machines (steal). Either makes every number noisier, and the
    report says by how much."""

    def __init__(self) -> None:
        self._start: tuple[float, float, float, float] | None = None
        self.other_cores = 0.0
        self.steal_cores = 0.0

    @staticmethod
    def _read(pids: list[int]) -> tuple[float, float, float, float]:
        own = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):  # this process, the wrk runs
            usage = resource.getrusage(who)
            own += usage.ru_utime + usage.ru_stime
        busy, steal = machine_cpu_s()
        return time.monotonic(), busy, steal, own + tree_cpu_s(pids)

    def start(self, pids: list[int]) -> None:
        self._start = self._read(pids)

    def stop(self, pids: list[int]) -> None:
        """``pids``: the bench's servers still running (the same ones as at start)."""
        assert self._start is not None
        t0, busy0, steal0, own0 = self._start
        t1, busy1, steal1, own1 = self._read(pids)
        elapsed = max(t1 - t0, 1e-9)
        self.other_cores = max(0.0, (busy1 - busy0) - (own1 - own0)) / elapsed
        self.steal_cores = (steal1 - steal0) / elapsed

    def __str__(self) -> str:
        return (
            f"other processes kept {self.other_cores:.2f} cores busy and the hypervisor took "
            f"{self.steal_cores:.2f} (steal)"
        )


def machine(loop: str) -> list[tuple[str, str]]:
    import aiohttp

    models = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    cpu = f"{models[0] if models else platform.processor() or '?'} x {os.cpu_count()}"
    return [
        ("cpu", cpu),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("aiohttp", aiohttp.__version__),
        ("event loop", loop),
        ("wrk", tool_version(["wrk", "-v"])),
        ("redis", tool_version(["redis-server", "--version"])),
    ]


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


# --------------------------------------------------------------------------- Redis and /metrics


class RedisCalls:
    """Commands a Redis server has run, from ``INFO commandstats``, over one connection kept open
    (a new connection would add its own handshake commands to the count)."""

    def __init__(self, port: int) -> None:
        import redis

        self._client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)

    def total(self) -> int:
        """Every command so far except INFO (this method's own)."""
        stats = self._client.info("commandstats")
        return sum(int(v["calls"]) for name, v in stats.items() if name.removeprefix("cmdstat_") != "info")

    def close(self) -> None:
        self._client.close()


def metric_total(text: str, name: str) -> float | None:
    """The sum over every series of counter ``name`` (``..._total``); None when it is absent."""
    from prometheus_client.parser import text_string_to_metric_families

    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
    return sum(values) if values else None
