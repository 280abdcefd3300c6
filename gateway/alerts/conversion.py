"""The pumping guard (``[alerts.conversion]``): OTP sends against successful checks.

Pumped one-time codes are never entered, so SMS pumping shows as conversion (checks approved /
codes sent) falling in one destination country, one number prefix (the number without its last
four digits) or from one client address. The gateway sees both halves for any vendor: the OTP send
(kind ``otp``, or an ``sms`` route's message that ``[route.otp] detect`` marks) and the check (kind
``otp-check``) with the vendor's answer to it.

Counting, per subject (country, prefix, address), in buckets of ``check_window``:

- a send adds one to its subjects' send counter in the current bucket and leaves a *mark* under the
  number's storage HMAC naming the conversion counters of that bucket (live for ``window``);
- an approved check redeems the number's mark: one is added to exactly those counters, so a
  conversion is counted in the bucket of the send it converts, however late it comes;
- a send is *due* once ``check_window`` has passed (buckets older than the previous one): only due
  sends and their conversions are compared, so codes still waiting for their check never count as
  failed. A subject with at least ``min_sends`` due sends and conversion below ``threshold`` is
  *low*.

A low subject is recorded on the send's audit record (``conversion.low``) under ``learn``, alerted
once per subject and window under ``alert``, and refused (429 ``anomaly_blocked``, detail
``conversion``) under ``block``; a refused send is not counted, so its block lifts when old sends
leave the window or late checks of them arrive. ``smsgw alerts clear`` lifts it at once (it
deletes the subject's counters).

Cost: one storage call per OTP send (read, decide and count in one Lua script on Redis), one per
approved check; a send the vendor did not accept (no 2xx) is taken back with one more. Keys hold
countries, HMACs of prefixes and numbers and of addresses, never a number; every key of the rule
shares one Redis Cluster hash tag, so the script runs on one node.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web

from gateway.alerts.conversion_store import ConversionStore, SendCount, is_low
from gateway.config.schema import ConversionRule, parse_duration
from gateway.core.errors import Reason, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.core.values import NO_COUNTRY
from gateway.recipients.phone import parse_recipient
from gateway.storage.service import StorageService, StorageUnavailable, skipped

if TYPE_CHECKING:
    pass

__all__ = [
    "ConversionAlerts",
    "ConversionGuard",
    "GuardConversion",
    "check_approved",
    "is_low",
]


class ConversionAlerts(Protocol):
    """The alert service as the guard uses it (gateway/alerts/anomalies.py's ``AlertService``):
    where a rule's state lives, and how an alert is raised once."""

    def conversion(self, cfg: ConversionRule) -> ConversionGuard: ...

    def fire(self, rule: str, action: str, **fields: Any) -> None: ...

    async def once(self, subject: str, ttl_s: float) -> bool: ...


#: Every key of the rule carries this Redis Cluster hash tag (one script, one node).
HASH_TAG: Final = "{cv}"
#: Where a subject without a country (a number phonenumbers places nowhere) is counted.
#: A check answer's ``status`` that means approved, by vendor family (lower case).
_APPROVED: Final = frozenset({"approved", "completed", "verified", "valid", "success", "0"})
_REFUSED: Final = frozenset({"pending", "canceled", "cancelled", "failed", "expired", "denied", "rejected"})


def check_approved(status: int, body: bytes | None) -> bool:
    """Did the vendor approve the code? A 2xx answer, and no sign in it that the code was wrong.

    Twilio VerificationCheck answers 200 with ``status: "pending"`` for a wrong code and
    ``"approved"`` (``valid: true``) for a right one; Vonage Verify v2 answers 200 ``completed``
    and legacy ``status: "0"``; a client's own check route answers 2xx only for a right code.
    """
    if not 200 <= status < 300:
        return False
    if not body:
        return True
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return True
    if not isinstance(doc, dict):
        return True
    valid = doc.get("valid", doc.get("verified"))
    if isinstance(valid, bool):
        return valid
    state = doc.get("status")
    if isinstance(state, str | int) and not isinstance(state, bool):
        text = str(state).strip().lower()
        if text in _APPROVED:
            return True
        if text in _REFUSED or text:
            return False
    return True


def _answer_number(body: bytes | None) -> str | None:
    """The number a check's answer names (Twilio's ``to``), for a check that named only its id."""
    if not body:
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    to = doc.get("to") if isinstance(doc, dict) else None
    return to if isinstance(to, str) else None


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True, slots=True)
class Subject:
    kind: str  # country | prefix | address
    id: str  # as stored: a country code, or an HMAC
    shown: str  # as alerts and audit records show it: never a number


class ConversionGuard:
    """One ``[alerts.conversion]`` table, compiled: keys, buckets and the decision."""

    def __init__(self, cfg: ConversionRule, storage: StorageService, store: ConversionStore) -> None:
        self.action = cfg.action
        self.block = cfg.action == "block"
        self.by = cfg.by
        self.min_sends = cfg.min_sends
        self.threshold = cfg.threshold
        self.bucket_s = float(parse_duration(cfg.check_window))
        self.window_s = float(parse_duration(cfg.window))
        self.buckets = int(self.window_s // self.bucket_s)
        self.storage = storage
        self.store = store

    def key(self, *parts: str) -> str:
        return self.storage.key("cv", HASH_TAG, *parts)

    def bucket(self, now: float | None = None) -> int:
        return int((time.time() if now is None else now) // self.bucket_s)

    def due(self, bucket: int) -> range:
        """Buckets whose every send is at least ``check_window`` old, within the window."""
        return range(bucket - self.buckets + 1, bucket - 1)

    def subjects(self, e164: str, region: str | None, ip: str) -> list[Subject]:
        keys = self.storage.keys
        assert keys is not None  # check-config requires logging.hash_key for this rule
        out: list[Subject] = []
        for kind in self.by:
            if kind == "country":
                country = region or NO_COUNTRY
                out.append(Subject(kind, country, country))
            elif kind == "prefix":
                digest = keys.digest("prefix", e164[:-4])[:16]
                out.append(Subject(kind, digest, e164[:5] + "****"))
            elif ip:
                out.append(Subject(kind, keys.digest("ip", ip)[:16], ip))
        return out

    def mark_key(self, e164: str) -> str:
        keys = self.storage.keys
        assert keys is not None
        return self.key("m", keys.digest("number", e164)[:32])

    def subject_keys(self, kind: str, subject_id: str, bucket: int) -> list[str]:
        """Every counter a subject may have in the window up to ``bucket`` (for a clear)."""
        span = range(bucket - self.buckets - 1, bucket + 1)
        return [self.key(what, kind, subject_id, str(b)) for what in ("s", "c") for b in span]

    def send_call(self, numbers: Sequence[tuple[str, list[Subject]]], bucket: int) -> SendCount:
        subjects = list({(s.kind, s.id): s for _, subs in numbers for s in subs}.values())
        due = self.due(bucket)
        groups = tuple(
            (
                tuple(self.key("s", s.kind, s.id, str(b)) for b in due),
                tuple(self.key("c", s.kind, s.id, str(b)) for b in due),
            )
            for s in subjects
        )
        marks = tuple(
            (
                self.mark_key(e164),
                "\n".join(self.key("c", s.kind, s.id, str(bucket)) for s in subs).encode("ascii"),
            )
            for e164, subs in numbers
        )
        return SendCount(
            adds=tuple(self.key("s", s.kind, s.id, str(bucket)) for s in subjects),
            groups=groups,
            marks=marks,
            ttl_s=self.window_s + self.bucket_s,
            min_sends=self.min_sends,
            threshold=self.threshold,
            block=self.block,
        )


# --------------------------------------------------------------------------- the stage


class GuardConversion:
    """Stage, after the limits and anomaly rules: counts an OTP send (refusing it under ``block``
    where conversion is low) or, once the vendor answered, an approved check."""

    name = "conversion"
    __slots__ = ("_alerts", "_guard", "_route_name")

    def __init__(self, guard: ConversionGuard, alerts: ConversionAlerts, route_name: str) -> None:
        self._guard = guard
        self._alerts = alerts
        self._route_name = route_name

    async def run(self, ex: Exchange) -> None:
        if ex.otp_kind == "check":
            ex.answer_hook = self._judge
            return
        if ex.otp_kind != "send" or not ex.destinations:
            return
        guard = self._guard
        numbers = [(d.e164, guard.subjects(d.e164, d.region, ex.ip)) for d in ex.destinations]
        now = time.time()
        call = guard.send_call(numbers, guard.bucket(now))
        storage = guard.storage
        try:
            storage.check_up()
            low, figures = await guard.store.send(call)
        except StorageUnavailable:
            if not guard.block:
                storage.note_failure("alerts")
                return
            error = storage.unavailable("alerts")
            if error is not None:
                raise error from None
            ex.detail = skipped(ex.detail, Detail.ALERTS_SKIPPED)
            return
        first = numbers[0][1]
        ex.conversion = {s.kind: s.shown if s.kind == "country" else s.id for s in first}
        if not low:
            ex.held[self.name] = call
            return
        subjects = list({(s.kind, s.id): s for _, subs in numbers for s in subs}.values())
        subject = subjects[low - 1]
        sends, converted = figures[low - 1]
        ex.conversion["low"] = subject.kind
        if guard.action != "learn":
            await self._fire(ex, subject, sends, converted, now)
        if guard.block:
            retry_after = (guard.bucket(now) + 1) * guard.bucket_s - now
            raise refuse(
                Reason.ANOMALY_BLOCKED,
                "one-time codes sent here are rarely entered; sends are paused",
                headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
                detail=Detail.CONVERSION,
            )
        ex.held[self.name] = call

    async def _fire(self, ex: Exchange, subject: Subject, sends: int, converted: int, now: float) -> None:
        guard = self._guard
        window = int(now // guard.window_s)
        if not await self._alerts.once(f"cv:{subject.kind}:{subject.id}:{window}", guard.window_s):
            return
        fields: dict[str, Any] = {subject.kind: subject.shown}
        if subject.kind != "country":
            fields[f"{subject.kind}_id"] = subject.id
        self._alerts.fire(
            Detail.CONVERSION,
            guard.action,
            subject=subject.kind,
            **fields,
            client=ex.client_id,
            route=ex.route_name,
            sends=sends,
            converted=converted,
            conversion=round(converted / sends, 4) if sends else None,
            threshold=guard.threshold,
            window_s=guard.window_s,
            request_id=ex.request_id,
        )

    def _judge(self, ex: Exchange, status: int, body: bytes | None) -> None:
        """Called by the forward stage before the outcome record: was the code approved?"""
        approved = check_approved(status, body)
        destination = ex.destinations[0] if ex.destinations else None
        if destination is None:
            raw = _answer_number(body)
            if raw is not None:
                try:
                    destination = parse_recipient(raw)
                except Exception:
                    destination = None
        ex.conversion = {"approved": approved}
        if destination is None:
            return
        for subject in self._guard.subjects(destination.e164, destination.region, ex.ip):
            if subject.kind != "address":  # the check's caller need not be the send's
                ex.conversion[subject.kind] = subject.shown if subject.kind == "country" else subject.id
        if approved:
            ex.held[self.name] = destination.e164

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None:
        held = ex.held.pop(self.name, None)
        if held is None:
            return
        guard = self._guard
        try:
            if isinstance(held, str):  # an approved check: its send converted
                await guard.store.redeem(guard.mark_key(held), guard.window_s + guard.bucket_s)
            elif not (ex.status is not None and 200 <= ex.status < 300):  # not sent: not counted
                await guard.store.take_back(held.adds, [key for key, _ in held.marks])
        except StorageUnavailable:
            guard.storage.note_failure("alerts")
