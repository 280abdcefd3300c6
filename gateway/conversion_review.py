"""OTP conversion as the audit log tells it: the report's table, and ``smsgw alerts conversion``,
the dry run that shows what ``[alerts.conversion]`` would refuse with a given threshold.

Read from outcome records (the vendor's answer is known there): a send is an outcome with a 2xx
status and a ``conversion`` field without ``approved``; a check is one with ``approved``; a
refusal is a request record denied with detail ``conversion``. Countries and prefix ids (HMACs)
are what the records carry: no number is read or shown.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.conversion import is_low

__all__ = ["ConversionTally", "add_conversion_parser"]

_KINDS = ("country", "prefix")


@dataclass
class ConversionTally:
    """Counts per (kind, subject): sends, approved checks, failed checks, refused, would refuse."""

    counts: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)

    def _bump(self, conversion: dict[str, Any], what: str) -> None:
        for kind in _KINDS:
            subject = conversion.get(kind)
            if isinstance(subject, str) and subject:
                self.counts.setdefault((kind, subject), Counter())[what] += 1

    def count(self, record: dict[str, Any]) -> None:
        conversion = record.get("conversion")
        if not isinstance(conversion, dict):
            return
        event, status = record.get("event"), record.get("status")
        if event == "request" and record.get("decision") == "deny":
            if record.get("detail") == "conversion":
                self._bump(conversion, "refused")
            return
        if event != "outcome" or not isinstance(status, int):
            return
        if "approved" in conversion:
            self._bump(conversion, "converted" if conversion["approved"] is True else "failed")
        elif 200 <= status < 300:
            self._bump(conversion, "sends")
            if conversion.get("low"):
                self._bump(conversion, "flagged")

    def rows(self, min_sends: int = 1, threshold: float = 0.0) -> list[dict[str, Any]]:
        """Worst conversion first; ``would_refuse`` by the given rule figures."""
        out = []
        for (kind, subject), c in self.counts.items():
            sends, converted = c["sends"], c["converted"]
            out.append(
                {
                    "kind": kind,
                    "subject": subject,
                    "sends": sends,
                    "converted": converted,
                    "failed_checks": c["failed"],
                    "conversion": round(converted / sends, 4) if sends else None,
                    "refused": c["refused"],
                    "flagged": c["flagged"],
                    "would_refuse": threshold > 0 and is_low(sends, converted, min_sends, threshold),
                }
            )
        out.sort(key=lambda r: (r["conversion"] if r["conversion"] is not None else 2.0, -r["sends"]))
        return out


def _text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'kind':8} {'subject':18} {'sends':>7} {'entered':>8} {'rate':>6} {'refused':>8} {'would':>6}"]
    for r in rows:
        rate = f"{r['conversion']:.0%}" if r["conversion"] is not None else "-"
        would = "yes" if r["would_refuse"] else ""
        lines.append(
            f"{r['kind']:8} {r['subject'][:18]:18} {r['sends']:>7} {r['converted']:>8} {rate:>6} "
            f"{r['refused']:>8} {would:>6}"
        )
    return "\n".join(lines) + "\n"


def cmd_conversion(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.review import read_records

    tally = ConversionTally()
    for name in args.files:
        for _, record, _ in read_records(Path(name)):
            if record is not None:
                tally.count(record)
    rows = tally.rows(args.min_sends, args.threshold)
    sys.stdout.write(_text(rows))
    would = sum(1 for r in rows if r["would_refuse"])
    print(
        f"{would} subject(s) under {args.threshold:.0%} conversion with at least {args.min_sends} sends",
        file=sys.stderr,
    )
    return 0


def add_conversion_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "conversion",
        help="OTP conversion by country and prefix from audit logs, and what a threshold would refuse",
    )
    p.add_argument("--threshold", type=float, default=0.2, help="the rule's threshold to try (0 to 1)")
    p.add_argument("--min-sends", type=int, default=20, help="the rule's min_sends to try")
    p.add_argument("files", nargs="+", help="audit log files")
    p.set_defaults(func=cmd_conversion)
