"""OTP conversion as the audit log tells it: the report's table, and ``smsgw alerts conversion``,
the dry run that shows what ``[alerts.conversion]`` would refuse with a given threshold.

Read from outcome records (the vendor's answer is known there): a send is an outcome with a 2xx
status and a ``conversion`` field without ``approved``; a check is one with ``approved``; a
refusal is a request record denied with detail ``conversion``. Countries and prefix ids (HMACs)
are what the records carry: no number is read or shown.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.alerts.conversion_store import is_low
from gateway.core.events import AuditEvent, Detail

__all__ = ["ConversionTally"]

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
        if event == AuditEvent.REQUEST and record.get("decision") == "deny":
            if record.get("detail") == Detail.CONVERSION:
                self._bump(conversion, "refused")
            return
        if event != AuditEvent.OUTCOME or not isinstance(status, int):
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
