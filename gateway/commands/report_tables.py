"""What ``smsgw audit report`` shows a reviewer beyond the counts: sends and refusals by
destination country (the first sign of SMS pumping), config generations and the reloads that
weakened the policy, where failed authentications came from, which client and route got the
vendor's 4xx, and probes (404/405) read from the access log, where they live.

Read from records as written: countries are ISO codes (``countries`` of a request record), never
numbers; addresses are the client addresses the records already hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.core.events import AuditEvent

__all__ = ["ReportTables"]

_TOP = 50  # rows a table shows at most (the JSON keeps them all)


@dataclass
class ReportTables:
    countries: dict[str, Counter[str]] = field(default_factory=dict)
    generations: list[dict[str, Any]] = field(default_factory=list)
    weakened: list[dict[str, Any]] = field(default_factory=list)
    auth_failures: Counter[str] = field(default_factory=Counter)
    vendor_4xx: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    probes: Counter[tuple[str, int]] = field(default_factory=Counter)
    access_read: bool = False

    def count(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == AuditEvent.REQUEST:
            decision = str(record.get("decision"))
            for country in record.get("countries") or ():
                self.countries.setdefault(str(country), Counter())[decision] += 1
            if record.get("reason") == "unauthenticated":
                self.auth_failures[str(record.get("ip") or "(unknown)")] += 1
        elif event == AuditEvent.OUTCOME:
            status = record.get("status")
            if isinstance(status, int) and 400 <= status < 500:
                self.vendor_4xx[(str(record.get("client")), str(record.get("route")), status)] += 1
        elif event == AuditEvent.CONFIG_LOADED:
            self.generations.append(
                {
                    "ts": record.get("ts"),
                    "generation": record.get("generation"),
                    "trigger": record.get("trigger"),
                    "config_sha256": record.get("config_sha256"),
                    "worker": record.get("worker"),
                }
            )
        elif event == AuditEvent.POLICY_WEAKENED:
            kept = {k: v for k, v in record.items() if k not in ("chain", "provider", "event")}
            self.weakened.append(kept)

    def count_access(self, records: Iterable[dict[str, Any] | None]) -> None:
        """Probes: requests no route served (404 ``route_not_found``, 405 ``method_not_allowed``),
        from an access log's records."""
        self.access_read = True
        for record in records:
            if record is not None and record.get("status") in (404, 405) and record.get("route") is None:
                self.probes[(str(record.get("ip") or "(unknown)"), int(record["status"]))] += 1

    def data(self) -> dict[str, Any]:
        return {
            "countries": [
                {"country": c, "allow": n.get("allow", 0), "deny": n.get("deny", 0)}
                for c, n in sorted(self.countries.items(), key=lambda i: (-sum(i[1].values()), i[0]))
            ],
            "config_generations": self.generations,
            "policy_weakened": self.weakened,
            "auth_failures_by_address": [
                {"ip": ip, "failures": n} for ip, n in self.auth_failures.most_common()
            ],
            "vendor_4xx": [
                {"client": c, "route": r, "status": s, "answers": n}
                for (c, r, s), n in self.vendor_4xx.most_common()
            ],
            "probes": [{"ip": ip, "status": s, "requests": n} for (ip, s), n in self.probes.most_common()],
            "access_read": self.access_read,
        }


def _weakened_html(t: dict[str, Any], escape: Any) -> str:
    items = "".join(
        f"<li>{escape(w.get('ts'))} (generation {escape(w.get('generation'))}): "
        + "; ".join(
            escape(f"{c.get('file')}: {c.get('key')}: {c.get('change')}") for c in w.get("weakened") or []
        )
        + "</li>"
        for w in t["policy_weakened"]
    )
    if not items:
        return '<p id="weakened">No reload weakened the policy.</p>'
    return f'<p class="bad">Reloads that weakened the policy:</p><ul id="weakened">{items}</ul>'


def html_sections(data: dict[str, Any], table: Any, rows: Any, escape: Any) -> str:
    """The report's sections for these tables (``table``/``rows``/``escape`` are the report's)."""
    t = data["tables"]
    specs = [
        ("By destination country", "countries", ("country", "allowed", "refused"), 1,
         [(c["country"], c["allow"], c["deny"]) for c in t["countries"]]),
        ("Config generations", "generations", ("loaded", "generation", "trigger", "config_sha256"), 9,
         [(g["ts"], g["generation"], g["trigger"], g["config_sha256"]) for g in t["config_generations"]]),
        ("Failed authentications by address", "auth-failures", ("address", "failures"), 1,
         [(a["ip"], a["failures"]) for a in t["auth_failures_by_address"]]),
        ("The vendor's 4xx answers", "vendor-4xx", ("client", "route", "status", "answers"), 2,
         [(v["client"], v["route"], v["status"], v["answers"]) for v in t["vendor_4xx"]]),
    ]  # fmt: skip
    out = []
    for title, table_id, headers, numeric_from, items in specs:
        out.append(f"<h2>{escape(title)}</h2>\n{table(table_id, headers, rows(items[:_TOP], numeric_from))}")
        if table_id == "generations":
            out.append(_weakened_html(t, escape))
    out.append("<h2>Probes (404/405, from the access log)</h2>")
    if t["access_read"]:
        probes = [(p["ip"], p["status"], p["requests"]) for p in t["probes"]]
        out.append(table("probes", ("address", "status", "requests"), rows(probes[:_TOP], 1)))
    else:
        out.append("<p>Give the access log with --access to count probes.</p>")
    return "\n".join(out) + "\n"
