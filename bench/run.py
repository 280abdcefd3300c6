"""smsgw against a bare aiohttp proxy, under the same load, in the same run, on the same vendor.

Contenders: the bare proxy (``bench/servers.py``), the gateway with ``memory://`` storage, the
gateway with its own ``redis-server``, and the gateway (memory storage) under RFC 9421 signed
sends instead of a JWT; each in its own process, all on one stand-in vendor (nginx, or an asyncio
stand-in), all on one event loop. wrk sends the load over HTTPS on loopback; the contenders take
turns (bare, memory, redis, signed, bare, ...) at 1 and at 32 connections for ``--rounds`` rounds,
so drift on a shared machine hits them alike, and the medians are reported in one table.
``--workers`` and ``--soak`` add their own measurements.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import (
    PATH,
    CpuMeter,
    RedisCalls,
    Result,
    SignedLoad,
    connections_by_process,
    form_body,
    machine,
    metric_total,
    open_fds,
    parse_wrk,
    rss_mib,
    tree_cpu_s,
    write_script,
    wrk,
    wrk_argv,
)
from bench.stack import HMAC_KEY_ID, BenchError, Gateway, Stack, tail

CONNECTIONS = (1, 32)
#: Signed requests made for a run: this many times what the fastest contender answered in as long.
SIGNED_MARGIN = 1.5
ROUND_TRIPS = "smsgw_storage_round_trips_total"
SOAK_SAMPLE_S = 10


@dataclass
class Contender:
    name: str
    port: int
    pid: int
    log: Path
    gateway: Gateway | None = None
    redis: RedisCalls | None = None
    signed: SignedLoad | None = None
    results: dict[int, list[Result]] = field(default_factory=dict)
    sent: int = 0  # answers wrk and the sample request counted, warm-ups included
    redis_commands: dict[int, int] = field(default_factory=dict)
    round_trips: dict[int, float] = field(default_factory=dict)
    rss: float = 0.0
    audit: int = 0
    cpu_s: dict[int, float] = field(default_factory=dict)  # the contender's own CPU, by connections

    @classmethod
    def of(
        cls, name: str, gateway: Gateway, redis: RedisCalls | None = None, signed: SignedLoad | None = None
    ) -> Contender:
        return cls(name, gateway.port, gateway.process.pid, gateway.process.log, gateway, redis, signed)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def median(self, connections: int, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.results[connections])

    def requests(self, connections: int) -> int:
        return sum(r.requests for r in self.results[connections])


def sample_request(stack: Stack, contender: Contender) -> None:
    """One send as wrk will make it, answered 201 by the vendor through the contender."""
    conn = http.client.HTTPSConnection("127.0.0.1", contender.port, timeout=10, context=stack.tls_client())
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if contender.signed is not None:
        headers.update(contender.signed.headers(0))
    else:
        headers["Authorization"] = f"Bearer {stack.token}"
    try:
        conn.request("POST", PATH, body=form_body(0), headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        request_id = answer.getheader("X-Request-ID")
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"{contender.name} failed a valid send: {exc!r}\n{tail(contender.log)}") from None
    finally:
        conn.close()
    try:
        sid = str(json.loads(body).get("sid", ""))
    except (ValueError, AttributeError):
        sid = ""
    if answer.status != 201 or not sid.startswith("SM"):
        raise BenchError(f"{contender.name} answered {answer.status} to a valid send: {body[:300]!r}")
    if contender.gateway is not None and not request_id:
        raise BenchError(f"{contender.name} answered without X-Request-ID: is it the gateway?")
    contender.sent += 1


def checked(contender: Contender, result: Result, what: str) -> Result:
    """A run with refused or failed requests measures the wrong thing: stop with what happened."""
    if any(result.errors.values()):
        raise BenchError(
            f"{contender.name} ({what}): wrk counted errors {result.errors} in {result.requests} requests "
            "('status' = answers of 400 or more); a benchmark of refusals is worthless\n"
            + tail(contender.log)
        )
    if result.requests == 0:
        raise BenchError(f"{contender.name} ({what}): no request was answered")
    return result


def measure(
    contender: Contender,
    script: Path,
    connections: int,
    seconds: float,
    during: Callable[[], None] | None = None,
) -> None:
    """One wrk run; for the Redis gateway, the commands Redis ran and the round trips the
    gateway counted over exactly that run."""
    trips_before = calls_before = None
    if contender.redis is not None:
        assert contender.gateway is not None
        trips_before = metric_total(contender.gateway.metrics(), ROUND_TRIPS)
        calls_before = contender.redis.total()
    if contender.signed is not None:
        script = contender.signed.script(signed_count(seconds))
    cpu_before = tree_cpu_s([contender.pid])
    result = wrk(contender.url, script, connections, seconds, during)
    cpu = tree_cpu_s([contender.pid]) - cpu_before
    contender.cpu_s[connections] = contender.cpu_s.get(connections, 0.0) + cpu
    if contender.redis is not None and calls_before is not None:
        assert contender.gateway is not None
        calls = contender.redis.total() - calls_before
        contender.redis_commands[connections] = contender.redis_commands.get(connections, 0) + calls
        trips_after = metric_total(contender.gateway.metrics(), ROUND_TRIPS)
        if trips_before is not None and trips_after is not None:
            trips = trips_after - trips_before
            contender.round_trips[connections] = contender.round_trips.get(connections, 0) + trips
    contender.results.setdefault(connections, []).append(
        checked(contender, result, f"{connections} connections")
    )
    note_rate(result)
    contender.sent += result.requests


#: The most requests per second any contender has answered so far (the signed load's sizing).
_fastest_rps = [5000.0]


def signed_count(seconds: float) -> int:
    """How many signed requests a run of ``seconds`` needs: more than any contender has sent in
    as long, so no nonce is sent twice."""
    return int(_fastest_rps[0] * seconds * SIGNED_MARGIN) + 1000


def note_rate(result: Result) -> None:
    _fastest_rps[0] = max(_fastest_rps[0], result.rps)


# --------------------------------------------------------------------------- output


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(contenders: list[Contender]) -> str:
    bare = contenders[0]
    head = (
        "contender",
        "conns",
        "req/s",
        "±%",
        "p50 ms",
        "p99 ms",
        "gw/bare",
        "+p50 ms",
        "CPU ms/req",
        "redis cmd/req",
        "redis rt/req",
        "RSS MiB",
    )
    rows = [head]
    for connections in CONNECTIONS:
        for c in contenders:
            rps = [r.rps for r in c.results[connections]]
            spread = (max(rps) - min(rps)) / statistics.median(rps) * 100 if len(rps) > 1 else None
            is_gw = c.gateway is not None
            ratio = c.median(connections, "rps") / bare.median(connections, "rps") if is_gw else None
            added = c.median(1, "p50_ms") - bare.median(1, "p50_ms") if is_gw and connections == 1 else None
            commands = rt = "-"
            if c.redis is not None:
                commands = fmt(c.redis_commands[connections] / c.requests(connections), 2)
                trips = c.round_trips.get(connections)
                rt = "n/a" if trips is None else fmt(trips / c.requests(connections), 2)
            rows.append(
                (
                    c.name,
                    str(connections),
                    fmt(c.median(connections, "rps")),
                    fmt(spread, 1),
                    fmt(c.median(connections, "p50_ms"), 2),
                    fmt(c.median(connections, "p99_ms"), 2),
                    fmt(ratio, 2),
                    fmt(added, 2),
                    fmt(c.cpu_s[connections] * 1000 / c.requests(connections), 2),
                    commands,
                    rt,
                    fmt(c.rss, 1),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the parts of a run


def main_table(
    stack: Stack, vendor_url: str, redis_port: int, script: Path, args: argparse.Namespace
) -> tuple[list[Contender], str, CpuMeter]:
    bare_port, bare_process, bare_loop = stack.start_bare(vendor_url)
    memory = stack.start_gateway("gateway-memory", vendor_url, "memory://")
    redis_gw = stack.start_gateway("gateway-redis", vendor_url, f"redis://127.0.0.1:{redis_port}/0")
    signed_gw = stack.start_gateway("gateway-signed", vendor_url, "memory://")
    origin = f"https://127.0.0.1:{signed_gw.port}"
    signed = SignedLoad(signed_gw.folder, origin, HMAC_KEY_ID, stack.hmac_secret)
    contenders = [
        Contender("bare aiohttp", bare_port, bare_process.pid, bare_process.log),
        Contender.of("gateway memory", memory),
        Contender.of("gateway redis", redis_gw, RedisCalls(redis_port)),
        Contender.of("gateway RFC 9421", signed_gw, signed=signed),
    ]
    loops = {bare_loop, *memory.loops(), *redis_gw.loops(), *signed_gw.loops()}
    loop = loops.pop() if len(loops) == 1 else "MIXED: " + ", ".join(sorted(loops))
    if loop.startswith("MIXED"):
        print(f"warning: the contenders ran on different event loops ({loop})", file=sys.stderr)
    cpu = CpuMeter()
    try:
        for c in contenders:
            sample_request(stack, c)
        for c in contenders:  # warm-up: connections, pools, the token cache; not counted
            load = c.signed.script(signed_count(args.warmup)) if c.signed is not None else script
            warm = checked(c, wrk(c.url, load, 32, args.warmup), "warm-up")
            note_rate(warm)
            c.sent += warm.requests
        cpu.start(stack.live_pids())
        total = args.rounds * len(CONNECTIONS) * len(contenders)
        done = 0
        for round_ in range(1, args.rounds + 1):
            for connections in CONNECTIONS:
                for c in contenders:
                    done += 1
                    progress(f"round {round_}/{args.rounds}: {c.name}, {connections} conn ({done}/{total})")
                    measure(c, script, connections, args.duration)
        cpu.stop(stack.live_pids())
        progress("")
        for c in contenders:
            c.rss = rss_mib(c.pid)
            if c.gateway is not None:
                c.audit = c.gateway.audit_records()
    finally:
        for c in contenders:
            if c.redis is not None:
                c.redis.close()
    # the machine is theirs now
    for process in (bare_process, memory.process, redis_gw.process, signed_gw.process):
        process.stop()
    return contenders, loop, cpu


def compare_workers(
    stack: Stack, vendor_url: str, redis_port: int, script: Path, args: argparse.Namespace
) -> None:
    """``server.workers = 2`` against 1 at 32 connections, taking turns. Redis storage for both:
    check-config refuses more than one worker on ``memory://`` (each would count its own limits)."""
    one = stack.start_gateway("gateway-w1", vendor_url, f"redis://127.0.0.1:{redis_port}/1", workers=1)
    two = stack.start_gateway("gateway-w2", vendor_url, f"redis://127.0.0.1:{redis_port}/2", workers=2)
    contenders = [Contender.of("workers = 1", one), Contender.of("workers = 2", two)]
    for c in contenders:
        sample_request(stack, c)
        checked(c, wrk(c.url, script, 32, args.warmup), "warm-up")
    cpu = CpuMeter()
    cpu.start(stack.live_pids())
    splits: list[str] = []

    def split() -> None:
        splits.append("/".join(str(n) for n in connections_by_process(two.process.pid, two.port)))

    for round_ in range(1, args.rounds + 1):
        for c in contenders:
            progress(f"workers round {round_}/{args.rounds}: {c.name}")
            measure(c, script, 32, args.duration, split if c.gateway is two else None)
    cpu.stop(stack.live_pids())
    progress("")
    print(f"\nworkers (gateway, Redis storage, 32 connections; medians of {args.rounds} round(s)):")
    for c in contenders:
        c.rss = rss_mib(c.pid)
        print(
            f"  {c.name}: {c.median(32, 'rps'):,.0f} req/s, p50 {c.median(32, 'p50_ms'):.2f} ms, "
            f"p99 {c.median(32, 'p99_ms'):.2f} ms, RSS {c.rss:.1f} MiB (all processes)"
        )
    ratio = contenders[1].median(32, "rps") / contenders[0].median(32, "rps")
    verdict = "meets" if ratio >= 1.7 else "below"
    print(f"  workers=2 / workers=1 requests/s: {ratio:.2f} ({verdict} the 1.7 target)")
    print(f"  connections per worker (SO_REUSEPORT hashes them), each round: {', '.join(splits)}")
    print(f"  meanwhile {cpu}")
    for gw in (one, two):
        gw.process.stop()


def soak(stack: Stack, vendor_url: str, script: Path, seconds: float, warmup: float) -> None:
    """One wrk run of 32 connections against a fresh gateway (memory storage) for ``warmup`` +
    ``seconds``; from the end of the warm-up, its RSS and open file descriptors every 10 s.
    Steady load on a fixed set of keys and connections: growth of either is a leak."""
    gw = stack.start_gateway("gateway-soak", vendor_url, "memory://")
    c = Contender.of("gateway soak", gw)
    sample_request(stack, c)
    total = warmup + seconds
    samples: list[tuple[float, float, int]] = []
    started = time.monotonic()
    wrk_proc = subprocess.Popen(
        wrk_argv(c.url, script, 32, total), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        due = warmup
        while due <= total:
            time.sleep(max(0.0, min(due, total - 1) - (time.monotonic() - started)))
            if wrk_proc.poll() is not None:
                break
            samples.append(
                (time.monotonic() - started - warmup, rss_mib(gw.process.pid), open_fds(gw.process.pid))
            )
            t, rss, fds = samples[-1]
            progress(f"soak: {t:.0f}/{seconds:.0f} s, RSS {rss:.1f} MiB, {fds} fds")
            due += SOAK_SAMPLE_S
        stdout, stderr = wrk_proc.communicate(timeout=total + 60)
    finally:
        if wrk_proc.poll() is None:
            wrk_proc.kill()
            wrk_proc.wait()
    progress("")
    result = checked(c, parse_wrk(wrk_proc.returncode, stdout, stderr), "soak")
    if len(samples) < 2:
        raise BenchError("the soak ended before two samples were taken")
    first, last = samples[0], samples[-1]
    growth = (last[1] - first[1]) / first[1] * 100
    fd_growth = last[2] - first[2]
    print(
        f"\nsoak (gateway memory, 32 connections, {seconds:g} s after a {warmup:g} s warm-up, one wrk run):"
    )
    print(
        f"  {result.requests:,} requests, {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, no errors"
    )
    print("      t s   RSS MiB   fds")
    for t, rss, fds in samples:
        print(f"  {t:7.0f}  {rss:8.1f}  {fds:4d}")
    rss_ok = "within" if growth < 10 else "OVER"
    fd_ok = "none" if fd_growth <= 0 else "GROWING"
    print(f"  RSS growth {growth:+.1f} % ({rss_ok} the 10 % target); fd growth {fd_growth:+d} ({fd_ok})")
    gw.process.stop()


def progress(text: str) -> None:
    """A status line on stderr (a terminal only), so the table on stdout stays clean."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text)
        sys.stderr.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (10)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per contender and level (3)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of unmeasured load first (3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 3 s")
    parser.add_argument("--workers", action="store_true", help="also compare server.workers = 2 with 1")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS", help="also run a soak this long")
    parser.add_argument(
        "--vendor", choices=("auto", "python"), default="auto", help="auto: nginx when installed"
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="asyncio",
        help="the event loop of every contender (asyncio); auto: uvloop when importable",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 3.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 3.0
    if args.duration <= 0 or args.rounds < 1 or args.soak < 0 or args.warmup <= 0:
        parser.error("--duration and --warmup must be positive, --rounds at least 1, --soak not negative")
    if args.soak and args.soak < 2 * SOAK_SAMPLE_S:
        parser.error(
            f"--soak needs at least {2 * SOAK_SAMPLE_S} seconds (samples are {SOAK_SAMPLE_S} s apart)"
        )
    return args


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: the stack is stopped and removed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    if args.loop == "uvloop" and not has_uvloop:
        print("uvloop is not installed (pip install uvloop)", file=sys.stderr)
        return 2
    use_uvloop = args.loop == "uvloop" or (args.loop == "auto" and has_uvloop)
    try:
        with Stack(use_uvloop) as stack:
            vendor_url, vendor = stack.start_vendor(use_nginx=args.vendor == "auto")
            redis_port, _ = stack.start_redis()
            script = write_script(stack.folder, stack.token)
            contenders, loop, cpu = main_table(stack, vendor_url, redis_port, script, args)
            print_report(contenders, loop, vendor, cpu, args)
            steps: list[Callable[[], None]] = []
            if args.workers:
                steps.append(lambda: compare_workers(stack, vendor_url, redis_port, script, args))
            if args.soak:
                warm = min(30.0, max(5.0, args.soak / 6))
                steps.append(lambda: soak(stack, vendor_url, script, args.soak, warm))
            for step in steps:
                step()
    except BenchError as exc:
        progress("")
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0


def print_report(
    contenders: list[Contender], loop: str, vendor: str, cpu: CpuMeter, args: argparse.Namespace
) -> None:
    for name, value in machine(loop):
        print(f"{name + ':':12s}{value}")
    print(f"{'vendor:':12s}{vendor} on loopback, the same for every contender")
    print(
        f"{'load:':12s}wrk -t 1 over HTTPS, a Twilio form POST with a JWT (RFC 9421: signed, one nonce "
        f"each); {args.rounds} round(s) of "
        f"{args.duration:g} s per contender and level, taking turns; medians"
    )
    print(f"{'elsewhere:':12s}{cpu} during the measurements\n")
    print(table(contenders))
    print()
    for c in contenders:
        if c.gateway is not None:
            print(
                f"{c.name}: {c.audit:,} audit records for {c.sent:,} answered sends "
                "(a request and an outcome record per send)"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
