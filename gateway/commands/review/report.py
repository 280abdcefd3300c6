"""``smsgw audit report``: the scan as a self-contained HTML page (timeline, refusals,
conversion, findings)."""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.commands.report_tables import html_sections
from gateway.commands.review.chain import Scan, scan
from gateway.commands.review.keys import expected_files, load_keys
from gateway.commands.review.records import read_records

_BUCKETS_MIN = (1, 5, 15, 60, 360, 1440)
MAX_TIMELINE_ROWS = 48


def _minute(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def timeline(result: Scan) -> tuple[int, list[dict[str, Any]]]:
    """Refusals per time bucket, every bucket from the first refusal to the last (empty ones too),
    with the bucket size picked so the timeline fits one page."""
    per_minute: dict[datetime, Counter[str]] = {}
    for (minute, reason), n in result.refusals_by_minute.items():
        when = _minute(minute)
        if when is not None:
            per_minute.setdefault(when, Counter())[reason] += n
    if not per_minute:
        return 0, []
    first, last = min(per_minute), max(per_minute)
    span = (last - first).total_seconds() / 60 + 1
    size = next((b for b in _BUCKETS_MIN if span / b <= MAX_TIMELINE_ROWS), None)
    if size is None:
        size = int(-(-span // MAX_TIMELINE_ROWS))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start_min = int((first - epoch).total_seconds() // 60) // size * size
    buckets: dict[int, Counter[str]] = {}
    for when, reasons in per_minute.items():
        index = (int((when - epoch).total_seconds() // 60) - start_min) // size
        buckets.setdefault(index, Counter()).update(reasons)
    rows = []
    for index in range(max(buckets) + 1):
        reasons = buckets.get(index, Counter())
        start = epoch + timedelta(minutes=start_min + index * size)
        rows.append(
            {
                "start": start.strftime("%Y-%m-%dT%H:%MZ"),
                "refusals": sum(reasons.values()),
                "reasons": dict(reasons.most_common()),
            }
        )
    return size, rows


def report_data(result: Scan) -> dict[str, Any]:
    size, rows = timeline(result)

    def table(src: dict[str, Counter[str]]) -> list[dict[str, Any]]:
        return [
            {"name": name, "allow": c.get("allow", 0), "deny": c.get("deny", 0), "total": sum(c.values())}
            for name, c in sorted(src.items(), key=lambda item: (-sum(item[1].values()), item[0]))
        ]

    return {
        "files": [{"name": f.name, "records": f.records} for f in result.files],
        "records": result.records,
        "time_span": {"first": result.first_ts, "last": result.last_ts},
        "chain": {
            "intact": not result.breaks,
            "keyed": result.keyed,
            "first_break": str(result.breaks[0]) if result.breaks else None,
            "complete": not result.gaps,
            "missing": result.gaps,
            "notes": result.notes,
            "heads": [
                {"file": h.file, "line": h.line, "chain": h.chain, "ts": h.ts, "records": h.records}
                for h in (result.heads if not result.breaks else [])
            ],
        },
        "findings": [str(f) for f in result.findings],
        "decisions": dict(result.decisions.most_common()),
        "refusal_reasons": dict(result.reasons.most_common()),
        "clients": table(result.by_client),
        "routes": table(result.by_route),
        "events": dict(result.events.most_common()),
        "outcomes": dict(result.outcomes.most_common()),
        "timeline": {"bucket_minutes": size, "rows": rows},
        "conversion": result.conversion.rows(),
        "tables": result.tables.data(),
    }


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #eee}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#c0392b;height:.8em;display:inline-block}
.ok{color:#1e7e34;font-weight:bold}.bad{color:#c0392b;font-weight:bold}.warn{color:#b36b00;font-weight:bold}
code{font-size:.95em}footer{margin-top:2em;color:#666;font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rows(items: Iterable[tuple[Any, ...]], numeric_from: int = 1) -> str:
    out = []
    for item in items:
        cells = "".join(
            f'<td class="n">{_e(v)}</td>' if i >= numeric_from else f"<td>{_e(v)}</td>"
            for i, v in enumerate(item)
        )
        out.append(f"<tr>{cells}</tr>")
    return "".join(out) or '<tr><td colspan="4">none</td></tr>'


def _split(items: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    return ((c["name"], c["allow"], c["deny"], c["total"]) for c in items)


def _table(table_id: str, headers: tuple[str, ...], rows: str) -> str:
    head = "".join(
        f"<th>{_e(h)}</th>" if i == 0 else f'<th class="n">{_e(h)}</th>' for i, h in enumerate(headers)
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{rows}</table>'


_CONVERSION_HEADERS = ("country / prefix", "sends", "entered", "conversion", "refused")


def _conversion_rows(data: dict[str, Any]) -> str:
    rows = []
    for r in data.get("conversion", []):
        rate = f"{r['conversion']:.0%}" if r["conversion"] is not None else "-"
        refused = f"{r['refused']} (refused)" if r["refused"] else "0"
        rows.append((f"{r['kind']} {r['subject']}", r["sends"], r["converted"], rate, refused))
    return _rows(rows)


_ANCHOR_HINT = (
    "Note a head: <code>smsgw audit verify --anchor HASH</code> checks later that the log still reaches it."
)


def _chain_html(chain: dict[str, Any]) -> tuple[str, str, str]:
    """The chain's verdict, its notes and its heads (as list items)."""
    if chain["intact"] and chain["keyed"]:
        chain_html = '<span class="ok">intact</span>'
    elif chain["intact"]:  # links hold, but anyone who can write the log could relink it
        chain_html = '<span class="warn">intact, not keyed</span>'
    else:
        chain_html = f'<span class="bad">BROKEN</span>: {_e(chain["first_break"])}'
    chain_html += (
        " (HMAC-SHA256, chain key given)"
        if chain["keyed"]
        else " (SHA-256, no chain key given: whoever can write the log can rewrite it and relink the"
        " chain; set logging.chain_key and give it to the reviewers)"
    )
    if chain["missing"]:
        chain_html += '; <span class="bad">INCOMPLETE</span>'
    notes = "".join(f'<li class="bad">missing: {_e(n)}</li>' for n in chain["missing"])
    notes += "".join(f"<li>{_e(n)}</li>" for n in chain["notes"])
    heads = "".join(
        f"<li>head of {_e(h['file'])}: <code>{_e(h['chain'])}</code> (line {_e(h['line'])}, "
        f"{_e(h['ts'] or '-')}, {_e(h['records'])} records)</li>"
        for h in chain["heads"]
    )
    return chain_html, notes, heads


def _findings_html(findings: list[str]) -> str:
    if not findings:
        return '<p class="ok">none: no clear-text number, body or credential</p>'
    return (
        f'<p class="bad">{len(findings)} finding(s)</p><ul>'
        + "".join(f"<li><code>{_e(f)}</code></li>" for f in findings[:200])
        + "</ul>"
    )


def _timeline_rows(rows: list[dict[str, Any]]) -> str:
    """One row per bucket, with a bar scaled to the busiest one."""
    peak = max((r["refusals"] for r in rows), default=0) or 1
    return "".join(
        "<tr>"
        f"<td>{_e(r['start'])}</td>"
        f'<td class="n">{_e(r["refusals"])}</td>'
        f'<td><span class="bar" style="width:{round(200 * r["refusals"] / peak)}px"></span></td>'
        f"<td>{_e(', '.join(f'{k} {v}' for k, v in r['reasons'].items()))}</td>"
        "</tr>"
        for r in rows
    )


def render_html(data: dict[str, Any], generated: str) -> str:
    """One self-contained page: no script, no external asset, every value escaped."""
    chain_html, notes, heads = _chain_html(data["chain"])
    findings_html = _findings_html(data["findings"])
    span = data["time_span"]
    timeline_rows = _timeline_rows(data["timeline"]["rows"])
    files = ", ".join(f"{f['name']} ({f['records']})" for f in data["files"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>smsgw audit report</title><style>{_CSS}</style></head>
<body>
<h1>smsgw audit report</h1>
<p id="summary">{_e(data["records"])} records from {_e(span["first"] or "-")} to {_e(span["last"] or "-")}
in {_e(len(data["files"]))} file(s): {_e(files)}</p>
<h2>Integrity</h2>
<p id="chain">Chain: {chain_html}</p>{f"<ul>{notes}</ul>" if notes else ""}
{f'<ul id="heads">{heads}</ul><p>{_ANCHOR_HINT}</p>' if heads else ""}
<div id="findings"><p>Findings:</p>{findings_html}</div>
<h2>Decisions</h2>
{_table("decisions", ("decision", "requests"), _rows(data["decisions"].items()))}
<h2>By client</h2>
{_table("clients", ("client", "allowed", "refused", "total"), _rows(_split(data["clients"])))}
<h2>By route</h2>
{_table("routes", ("route", "allowed", "refused", "total"), _rows(_split(data["routes"])))}
<h2>Refusals by reason</h2>
{_table("reasons", ("reason", "refusals"), _rows(data["refusal_reasons"].items()))}
<h2>Refusals over time</h2>
<p>per {_e(data["timeline"]["bucket_minutes"])} minute(s), UTC</p>
<table id="timeline"><tr><th>from</th><th class="n">refusals</th><th></th><th>reasons</th></tr>
{timeline_rows or '<tr><td colspan="4">no refusals</td></tr>'}</table>
<h2>Vendor outcomes</h2>
{_table("outcomes", ("status", "sends"), _rows(data["outcomes"].items()))}
<h2>OTP conversion</h2>
<p>OTP sends the vendor accepted against approved checks, worst first (prefixes by their HMAC id)</p>
{_table("conversion", _CONVERSION_HEADERS, _conversion_rows(data))}
{html_sections(data, _table, _rows, _e)}<h2>Events</h2>
{_table("events", ("event", "records"), _rows(data["events"].items()))}
<footer>Made by <code>smsgw audit report</code> at {_e(generated)}.</footer>
</body></html>
"""


def cmd_report(args: argparse.Namespace) -> int:
    keys = load_keys(args)
    result = scan([Path(p) for p in args.files], keys.chain_key, expected=expected_files(args))
    for access in args.access or ():
        result.tables.count_access(record for _, record, _ in read_records(Path(access)))
    data = report_data(result)
    if args.format == "json":
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    else:
        text = render_html(data, datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
