"""The docs' tables of reason codes, audit events and details say what the code's enums say.

docs/request-path.md ("Reason codes") and docs/logs.md ("Audit events", "Details") are checked row
by row against ``Reason``, ``AuditEvent`` and ``Detail``: a row missing, extra or different fails.
The code never builds a refusal or writes an event from a string literal (guarded below too).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from gateway.audit.log import AuditLog, canonical
from gateway.core.errors import REASONS, GatewayError, Reason, redirect, refuse
from gateway.core.events import LIFECYCLE_EVENTS, AuditEvent, Detail
from gateway.core.jsonlog import JsonLinesSink, encode_line

ROOT = Path(__file__).resolve().parent.parent
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def table_rows(text: str, header: str) -> dict[str, list[str]]:
    """The rows of the markdown table that starts with ``header``, by their first cell."""
    lines = text.splitlines()
    start = lines.index(header) + 2
    rows: dict[str, list[str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [_LINK.sub(r"\1", c.strip()) for c in line.strip().strip("|").split(" | ")]
        rows[cells[0]] = cells[1:]
    return rows


def differences(documented: dict[str, list[str]], expected: dict[str, list[str]]) -> list[str]:
    """Every row missing from the doc, extra in it, or different (each cell compared)."""
    out = [f"missing: {key}" for key in expected if key not in documented]
    out += [f"extra: {key}" for key in documented if key not in expected]
    out += [
        f"different: {key}: {documented[key]} != {cells}"
        for key, cells in expected.items()
        if key in documented and documented[key][: len(cells)] != cells
    ]
    return out


def reason_rows() -> dict[str, list[str]]:
    return {
        f"`{r}`": [f"{r.status}, {r.redirect}" if r.redirect else str(r.status), r.meaning] for r in Reason
    }


def event_rows() -> dict[str, list[str]]:
    return {f"`{e}`": [e.meaning] for e in AuditEvent}


def detail_rows() -> dict[str, list[str]]:
    rows = {}
    for d in Detail:
        if not d.meaning.startswith("NAME: "):
            rows[f"`{d}`"] = [d.meaning]
        elif ";" in d.meaning:  # a prefix that is also a value on its own
            rows[f"`{d}`, `{d}:NAME`"] = [d.meaning.removeprefix("NAME: ")]
        else:
            rows[f"`{d}:NAME`"] = [d.meaning.removeprefix("NAME: ")]
    return rows


REQUEST_PATH = ROOT / "docs/request-path.md"
LOGS = ROOT / "docs/logs.md"
TABLES = [
    (REQUEST_PATH, "| code | status | meaning |", reason_rows),
    (LOGS, "| `event` | written when | fields |", event_rows),
    (LOGS, "| `detail` | meaning |", detail_rows),
]


@pytest.mark.parametrize(("doc", "header", "rows"), TABLES, ids=["reasons", "events", "details"])
def test_the_docs_table_is_the_enum(doc: Path, header: str, rows: object) -> None:
    assert callable(rows)
    assert differences(table_rows(doc.read_text(), header), rows()) == []


def test_the_check_fails_on_a_missing_an_extra_or_a_different_row() -> None:
    text = REQUEST_PATH.read_text()
    header, expected = TABLES[0][1], reason_rows()
    row = next(line for line in text.splitlines() if line.startswith("| `rate_limited` |"))
    missing = text.replace(row + "\n", "")
    extra = text.replace(row, row + "\n| `made_up` | 418 | a code the gateway never answers |")
    different = text.replace(row, row.replace("| 429 |", "| 430 |"))
    assert differences(table_rows(missing, header), expected) == ["missing: `rate_limited`"]
    assert differences(table_rows(extra, header), expected) == ["extra: `made_up`"]
    assert differences(table_rows(different, header), expected)[0].startswith("different: `rate_limited`")


def test_every_reason_takes_its_status_from_the_table() -> None:
    assert dict(REASONS) == {r.value: r.status for r in Reason}
    error = refuse(Reason.RATE_LIMITED, "slow down")
    assert (error.status, error.code) == (429, "rate_limited")
    moved = redirect(Reason.TLS_REQUIRED, "use HTTPS", "https://sms.example/x")
    assert (moved.status, moved.code, dict(moved.headers)) == (
        308,
        "tls_required",
        {"Location": "https://sms.example/x"},
    )
    with pytest.raises(ValueError, match="no redirect"):
        redirect(Reason.FORBIDDEN, "no", "https://sms.example/")
    assert [r for r in Reason if r.redirect is not None] == [Reason.TLS_REQUIRED]


def test_members_are_written_as_their_plain_strings(tmp_path: Path) -> None:
    plain = {"event": "request", "reason": "forbidden", "detail": "scope"}
    members = {"event": AuditEvent.REQUEST, "reason": Reason.FORBIDDEN, "detail": Detail.SCOPE}
    assert encode_line(members) == encode_line(plain)
    assert canonical(members) == canonical(plain)
    assert json.dumps(members) == json.dumps(plain)
    assert Detail.COUNTRY.of("NG") == "country:NG"

    written = []
    for name, event in (("a", AuditEvent.GATEWAY_STOPPED), ("b", "gateway_stopped")):
        path = tmp_path / f"{name}.jsonl"
        log = AuditLog(JsonLinesSink(str(path)), "twilio", None, clock=lambda: 0.0)
        log.event(event, worker=1)
        log.close()
        record = json.loads(path.read_bytes())
        written.append({k: v for k, v in record.items() if k not in ("ts", "chain")})
    assert written[0] == written[1] == {"event": "gateway_stopped", "provider": "twilio", "worker": 1}


def test_lifecycle_events_are_audit_events() -> None:
    assert LIFECYCLE_EVENTS <= set(AuditEvent)
    assert AuditEvent.REQUEST not in LIFECYCLE_EVENTS


def _string_first_args(tree: ast.AST, names: Iterable[str]) -> list[int]:
    wanted = set(names)
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        if name in wanted and isinstance(first, ast.Constant) and isinstance(first.value, (str, int)):
            lines.append(node.lineno)
    return lines


def test_no_refusal_or_event_is_built_from_a_literal() -> None:
    """``refuse("code")``, ``GatewayError(403, ...)`` or ``audit.event("name")`` would bypass the tables."""
    found = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        if path.name == "sandbox.py":  # the fake vendors answer in the vendors' own words
            continue
        tree = ast.parse(path.read_text())
        for line in _string_first_args(tree, ("refuse", "GatewayError", "event", "redirect")):
            found.append(f"{path.relative_to(ROOT)}:{line}")
    assert found == []


def test_the_literal_guard_finds_a_literal() -> None:
    tree = ast.parse('raise refuse("forbidden", "no")\nraise GatewayError(308, "tls_required", "x")\n')
    assert _string_first_args(tree, ("refuse", "GatewayError")) == [1, 2]
    assert isinstance(refuse(Reason.FORBIDDEN, "no"), GatewayError)
