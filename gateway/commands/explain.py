"""``smsgw explain``: which stage would refuse a request, and why, without sending anything.

The request runs through the very stages ``serve`` compiles from the config (the front chain,
then the matched route's chain), one at a time, and each stage's verdict is recorded: passed,
refused (reason code and audit detail), or answered. It stops before the audit stage, so nothing
is written and the vendor is never called; the record the audit log would get is shown instead.
Counters (rate limits, OTP caps, nonces, idempotency, anomaly rules) live in a throwaway memory
store, so nothing is spent in the real one, and a limit never looks already reached.

``--cases FILE`` runs a TOML file of requests with their expected verdicts and exits 1 on any
mismatch, so a policy change can be tested in CI before it is deployed (``opa test`` style).
A case may name the client it speaks for (``as = "billing"``) instead of carrying a credential:
authentication is then assumed and every later stage decides as for that client.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import netaddr
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.commands.command import load_or_exit
from gateway.config import Config
from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import AuditEvent
from gateway.core.exchange import Exchange
from gateway.core.pipeline import Stage, describe_exception, run_after
from gateway.identity.auth import Authenticate, Principal
from gateway.identity.ip import parse_ip
from gateway.identity.jwks import JwksService
from gateway.server.policy import Policy, build_policy
from gateway.server.services import Services, dry_services

__all__ = ["Case", "Explainer", "Explanation", "add_explain_parser", "load_cases", "run_cases"]

#: Stages explain never runs: the audit record is shown instead, and the vendor is not called.
STOP_AT = frozenset({"audit"})


@dataclass(frozen=True, slots=True)
class Case:
    """One request to explain, and optionally what it is expected to get."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    peer: str = "127.0.0.1"
    tls: bool = True
    as_client: str | None = None
    name: str = ""
    expect: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    stage: str
    outcome: str  # passed | refused | answered | error
    reason: str | None = None
    detail: str | None = None
    status: int | None = None


@dataclass
class Explanation:
    route: str | None
    kind: str | None
    client: str | None
    status: int
    reason: str | None
    detail: str | None
    stages: list[Verdict]
    audit: dict[str, Any] | None

    @property
    def decision(self) -> str:
        return "allow" if self.reason is None else "deny"

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "kind": self.kind,
            "client": self.client,
            "decision": self.decision,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "stages": [
                {k: v for k, v in vars(s).items() if v is not None or k in ("stage", "outcome")}
                for s in self.stages
            ],
            "audit_record": self.audit,
        }


class _DryAudit:
    """Stands where the audit log does: keeps the record the gateway would write, writes nothing."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def decision(self, ex: Exchange, decision: str) -> None:
        record = ex.audit_fields()
        record.update(
            event=AuditEvent.REQUEST, decision=decision, status=ex.status, reason=ex.reason, detail=ex.detail
        )
        self.records.append(record)

    def outcome(self, ex: Exchange, duration_ms: float) -> None:  # never reached: no forwarding
        pass

    def event(self, event: str, **fields: Any) -> bool:
        return True


class _Transport:
    """What the stages ask of a connection: the peer's address and whether TLS is in use."""

    def __init__(self, peer: str, tls: bool) -> None:
        self._extra = {"peername": (peer, 40000), "ssl_object": object() if tls else None}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return False


class _Protocol:
    """The flow control a body stream asks of its connection: the whole body is already here."""

    _reading_paused = False

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


class _AssumeClient:
    """Stands for the authentication stage when a case names its client (``as``)."""

    name = "authenticate"

    def __init__(self, client_id: str) -> None:
        self._client_id = client_id

    async def run(self, ex: Exchange) -> None:
        client = ex.policy.clients.get(self._client_id)
        if client is None:
            raise ValueError(f"no client {self._client_id!r} in the policies")
        ex.principal = Principal(client.id, "assumed")
        ex.client = client


def _request(case: Case) -> web.Request:
    parts = urlsplit(case.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = CIMultiDict(case.headers)
    if parts.netloc and "Host" not in headers:
        headers["Host"] = parts.netloc
    if case.body and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(case.body))
    loop = asyncio.get_running_loop()
    transport = _Transport(case.peer, case.tls)
    payload = StreamReader(_Protocol(transport), 2**16, loop=loop)  # type: ignore[arg-type]
    payload.feed_data(case.body)
    payload.feed_eof()
    return make_mocked_request(
        case.method.upper(), target, headers=headers, payload=payload, transport=transport, loop=loop
    )


class Explainer:
    """Compiles, for each request, the policy ``serve`` would compile from the config, over
    services that write nothing and call no vendor: a fresh memory storage (so no case spends a
    limit for the next, or for the real gateway), and an audit log that only keeps its record."""

    def __init__(self, config: Config, jwks: JwksService) -> None:
        self.config = config
        self._jwks = jwks
        self._audit = _DryAudit()

    @classmethod
    async def open(cls, config: Config) -> Explainer:
        memory = config.settings.storage.model_copy(update={"url": "memory://"})
        dry = dataclasses.replace(config, settings=config.settings.model_copy(update={"storage": memory}))
        jwks = JwksService(dry)
        await jwks.start()  # JWT issuers' key sets, as serve fetches them
        explainer = cls(dry, jwks)
        try:
            await explainer.close_policy(*explainer.policy())  # the config compiles, or fail now
        except BaseException:
            await jwks.close()
            raise
        return explainer

    def policy(self) -> tuple[Policy, Services]:
        services = dry_services(self.config, self._jwks, self._audit)  # type: ignore[arg-type]
        return build_policy(self.config, services), services

    @staticmethod
    async def close_policy(policy: Policy, services: Services) -> None:
        services.access_log.close()
        await services.storage.close()

    async def close(self) -> None:
        await self._jwks.close()

    async def explain(self, case: Case) -> Explanation:
        """Run ``case`` through the stages until one refuses or the audit stage is reached."""
        policy, services = self.policy()
        try:
            return await self._explain(policy, case)
        finally:
            await self.close_policy(policy, services)

    async def _explain(self, policy: Policy, case: Case) -> Explanation:
        request = _request(case)
        ex = Exchange(
            request, policy, uuid.uuid4().hex, 0.0, request.method, policy.redactor.path(request.raw_path)
        )
        try:
            ex.peer = parse_ip(case.peer)
            ex.ip = str(ex.peer)
        except (netaddr.AddrFormatError, ValueError):
            pass
        verdicts, refusal, ran_after = await self._run(policy, ex, case)
        self._audit.records.clear()
        if refusal is not None:
            ex.status, ex.reason, ex.detail = refusal.status, refusal.code, refusal.detail
        if ex.route is not None:
            self._audit.decision(ex, "deny" if refusal is not None else "allow")
        if ran_after:  # nothing went upstream: OTP slots and idempotency claims are given back
            await run_after(ex, ran_after, web.Response(status=refusal.status if refusal else 200))
        return Explanation(
            route=ex.route_name,
            kind=ex.route.kind if ex.route is not None else None,
            client=ex.client_id,
            status=refusal.status if refusal is not None else 200,
            reason=refusal.code if refusal is not None else None,
            detail=refusal.detail if refusal is not None else None,
            stages=verdicts,
            audit=self._audit.records[-1] if self._audit.records else None,
        )

    @staticmethod
    async def _run(
        policy: Policy, ex: Exchange, case: Case
    ) -> tuple[list[Verdict], GatewayError | None, list[Stage]]:
        verdicts: list[Verdict] = []
        ran_after: list[Stage] = []
        stages: list[Stage] = [stage for stage, _ in policy.front.stages]
        index = 0
        while index < len(stages):
            stage = stages[index]
            index += 1
            if stage.name in STOP_AT:
                break
            if case.as_client is not None and isinstance(stage, Authenticate):
                stage = _AssumeClient(case.as_client)
            if hasattr(stage, "after"):
                ran_after.append(stage)
            try:
                answer = await stage.run(ex)
            except GatewayError as exc:
                verdicts.append(Verdict(stage.name, "refused", exc.code, exc.detail, exc.status))
                return verdicts, exc, ran_after
            except Exception as exc:
                failed = refuse(Reason.INTERNAL_ERROR, "the gateway failed")
                verdicts.append(
                    Verdict(stage.name, "error", failed.code, describe_exception(exc), failed.status)
                )
                return verdicts, failed, ran_after
            if answer is not None:
                verdicts.append(Verdict(stage.name, "answered", status=answer.status))
                return verdicts, None, ran_after
            verdicts.append(Verdict(stage.name, "passed"))
            if stage.name == "route" and ex.route is not None:
                stages.extend(s for s, _ in ex.route.chain.stages)
        return verdicts, None, ran_after


# --------------------------------------------------------------------------- cases


_CASE_KEYS = frozenset({"name", "method", "url", "headers", "body", "from", "tls", "as", "expect"})
_EXPECT_KEYS = frozenset({"status", "reason", "route", "client", "stage", "detail", "decision"})


def _case(item: Any, where: str, base: Path) -> Case:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a case is a table")
    unknown = set(item) - _CASE_KEYS
    if unknown:
        raise ValueError(
            f"{where}.{sorted(unknown)[0]}: unknown key (known: {', '.join(sorted(_CASE_KEYS))})"
        )
    for key in ("method", "url"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise ValueError(f"{where}.{key}: required text")
    headers = item.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError(f"{where}.headers: a table of texts")
    body = item.get("body", "")
    if not isinstance(body, str):
        raise ValueError(f"{where}.body: text (@FILE reads a file)")
    data = (base / body[1:]).read_bytes() if body.startswith("@") else body.encode("utf-8")
    expect = item.get("expect", {})
    if not isinstance(expect, dict) or set(expect) - _EXPECT_KEYS:
        raise ValueError(f"{where}.expect: a table of {', '.join(sorted(_EXPECT_KEYS))}")
    peer = str(item.get("from", "127.0.0.1"))
    try:
        parse_ip(peer)
    except (netaddr.AddrFormatError, ValueError):
        raise ValueError(f"{where}.from: not an IP address") from None
    return Case(
        method=item["method"],
        url=item["url"],
        headers=tuple(headers.items()),
        body=data,
        peer=peer,
        tls=bool(item.get("tls", True)),
        as_client=item.get("as"),
        name=str(item.get("name", where)),
        expect=expect,
    )


def load_cases(path: Path) -> list[Case]:
    """``[[case]]`` tables of a TOML file; an error names the file and the key."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    items = doc.get("case")
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: case: at least one [[case]] table")
    try:
        return [_case(item, f"case[{i}]", path.parent) for i, item in enumerate(items)]
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def mismatches(case: Case, got: Explanation) -> list[str]:
    """What differs from the case's ``expect`` (``stage``: the stage that refused)."""
    refused_by = next((v.stage for v in got.stages if v.outcome == "refused"), None)
    actual = {
        "status": got.status,
        "reason": got.reason,
        "route": got.route,
        "client": got.client,
        "stage": refused_by,
        "detail": got.detail,
        "decision": got.decision,
    }
    return [
        f"{key}: expected {want!r}, got {actual[key]!r}"
        for key, want in case.expect.items()
        if actual[key] != want
    ]


# --------------------------------------------------------------------------- the command


def _text(got: Explanation) -> str:
    lines = [f"route: {got.route or '-'} ({got.kind or '-'})   client: {got.client or '-'}"]
    for v in got.stages:
        note = ""
        if v.outcome == "refused":
            note = f"{v.status} {v.reason}" + (f" (detail: {v.detail})" if v.detail else "")
        elif v.outcome == "answered":
            note = f"answered {v.status}"
        elif v.outcome == "error":
            note = f"500 internal_error ({v.detail})"
        lines.append(f"  {v.stage:<18} {v.outcome:<9} {note}".rstrip())
    if got.reason is None and got.route is not None and got.stages and got.stages[-1].outcome == "passed":
        lines.append(f"  {'audit':<18} {'would write':<9} allow")
        lines.append(f"  {'forward':<18} {'not run':<9} (explain never calls the vendor)")
        lines.append("verdict: allow: the request would be forwarded to the vendor")
    else:
        lines.append(
            f"verdict: {got.status} {got.reason}" + (f" (detail: {got.detail})" if got.detail else "")
        )
    return "\n".join(lines) + "\n"


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"-H {text!r}: write 'Name: value'")
    return name.strip(), value.strip()


def _single_case(args: argparse.Namespace) -> Case:
    headers = [_parse_header(h) for h in args.header]
    body = b""
    if args.data is not None:
        body = Path(args.data[1:]).read_bytes() if args.data.startswith("@") else args.data.encode("utf-8")
        if not any(n.lower() == "content-type" for n, _ in headers):
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    method = args.request or ("POST" if args.data is not None else "GET")
    return Case(method, args.url, tuple(headers), body, args.peer, not args.plain_http, args.as_client)


async def _main(args: argparse.Namespace, config: Config) -> int:
    explainer = await Explainer.open(config)
    try:
        if args.cases:
            return await run_cases(explainer, load_cases(Path(args.cases)), args.format)
        got = await explainer.explain(_single_case(args))
        if args.format == "json":
            print(json.dumps(got.as_dict(), indent=2, default=str))
        else:
            sys.stdout.write(_text(got))
        return 0 if got.reason is None else 1
    finally:
        await explainer.close()


async def run_cases(explainer: Explainer, cases: list[Case], fmt: str = "text") -> int:
    failed = 0
    results = []
    for case in cases:
        got = await explainer.explain(case)
        wrong = mismatches(case, got)
        failed += bool(wrong)
        results.append({"case": case.name, "ok": not wrong, "mismatches": wrong, **got.as_dict()})
        if fmt == "text":
            verdict = "allow" if got.reason is None else f"{got.status} {got.reason}"
            print(f"{'ok  ' if not wrong else 'FAIL'} {case.name}: {verdict}")
            for line in wrong:
                print(f"       {line}")
    if fmt == "json":
        print(json.dumps(results, indent=2, default=str))
    print(f"{len(cases) - failed} passed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_explain(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config, "nothing was explained")
    if not args.cases and not args.url:
        print("explain: give a URL (with -X, -H, -d) or --cases FILE", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args, config))
    except ValueError as exc:
        print(f"explain: {exc}", file=sys.stderr)
        return 2


def add_explain_parser(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="which stage would refuse a request, and why (calls no vendor, spends no limit)",
    )
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-X", "--request", help="the method (default GET, or POST with -d)")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("-d", "--data", help="the body; @FILE reads a file (a form unless -H sets Content-Type)")
    p.add_argument("--from", dest="peer", default="127.0.0.1", help="the client's address (TCP peer)")
    p.add_argument("--as", dest="as_client", help="assume this client instead of checking a credential")
    p.add_argument("--plain-http", action="store_true", help="the request arrives without TLS")
    p.add_argument("--cases", help="a TOML file of [[case]] requests with expected verdicts")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("url", nargs="?", help="https://HOST/PATH?QUERY")
    p.set_defaults(func=cmd_explain)
