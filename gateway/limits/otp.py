"""OTP retry caps: how often one number may be sent a code, and how often a code may be tried.

Applies to routes of ``kind = "otp"`` (every request is a send), to ``kind = "sms"`` messages
whose text matches ``route.otp.detect`` (compiled once, at policy build), and to
``kind = "otp-check"`` routes (verification checks). Per number and route, in storage:

- sends: at most ``max_sends`` within any ``window``, and at least ``min_interval`` after the
  previous send;
- checks: at most ``max_checks`` within any ``window``; a check that names its verification by id
  (Twilio ``VerificationSid``) is capped per verification id instead, and one that names both a
  number and an id is refused (400): the cap must count what the vendor checks.

The window slides (a log of timestamps, not a counter that resets), so ``Retry-After`` is exact:
the moment the oldest counted attempt leaves the window, or the previous send is
``min_interval`` old, whichever is later. Numbers and ids are keyed by an HMAC (never in clear).

One request takes one slot per number, so one request can never send more codes than its slots:
a number listed twice (``+4477...`` and ``4477...`` are one number) is refused (400), since two
codes to one number in one request are never a retry the cap could allow.

This module decides which slots a request takes; the limits stage (``gateway.limits.stage``) takes them
in the same storage call as the rate limits, only when every limit and slot allows the request, so
a user never loses a send to a refusal. An attempt counts only if the request may have reached the
vendor: a request refused after the limits (the audit log) or whose vendor connection never
opened gives its slot back.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import TYPE_CHECKING, Final

from gateway.config.schema import OTPConfig, parse_duration
from gateway.core.errors import GatewayError, Reason, bad_request, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.storage.counters import Slot
from gateway.storage.service import StorageService

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.limits.context import LimitsBuild

__all__ = ["OtpCaps", "build_otp_caps"]


class OtpCaps:
    """Which OTP slots a request takes (one per number or verification id), and the refusal
    (429 ``otp_retry_cap`` with the exact wait) when one does not fit."""

    __slots__ = ("_action", "_detect", "_gap_s", "_limit", "_route_name", "_storage", "_window_s")

    def __init__(
        self,
        storage: StorageService,
        route_name: str,
        kind: str,
        cfg: OTPConfig,
        detect: re.Pattern[str] | None,
    ) -> None:
        self._storage = storage
        self._route_name = route_name
        self._detect = detect
        self._window_s = float(parse_duration(cfg.window))
        if kind == "otp-check":
            self._action, self._limit, self._gap_s = Detail.CHECKS, cfg.max_checks, 0.0
        else:
            self._action, self._limit = Detail.SENDS, cfg.max_sends
            self._gap_s = float(parse_duration(cfg.min_interval))

    def applies(self, ex: Exchange) -> bool:
        if self._detect is None:
            return True
        message = ex.message
        if message is None:
            return False
        if message.templated:
            # Stored content (a template, a content SID): its text is not in the request, so the
            # gateway cannot tell it is not a code; counted as an OTP send (fails closed).
            return True
        detect = self._detect
        # Every content field, not only the text: template variables and custom codes carry codes.
        return any(
            detect.search(text) or (not text.isascii() and detect.search(shown_as_ascii(text)))
            for text in (*message.bodies, *message.secrets)
        )

    def subjects(self, ex: Exchange) -> list[tuple[str, str]]:
        """What the slots are counted on: ("number", E.164) or ("verification", id), once each;
        refuses (400) what the cap could not count exactly."""
        ids = ex.message.verification_ids if ex.message is not None else ()
        numbers = [d.e164 for d in ex.destinations]
        if ids and self._action == Detail.CHECKS:
            if numbers:
                raise bad_request("a verification check names its number or its verification id, not both")
            subjects = [("verification", v) for v in ids]
        else:
            if not numbers:
                raise bad_request("an OTP request must name the number it is for")
            subjects = [("number", e164) for e164 in numbers]
        if len(set(subjects)) < len(subjects):
            raise bad_request("a one-time-password request names the same number more than once")
        return subjects

    def slots(self, ex: Exchange) -> list[Slot]:
        """The slots this request takes; none when the caps do not apply to it."""
        if not self.applies(ex):
            return []
        ex.otp_kind = "check" if self._action == Detail.CHECKS else "send"
        storage = self._storage
        keys = storage.keys
        assert keys is not None  # check-config requires logging.hash_key for OTP caps
        route, action, member = self._route_name, self._action, ex.request_id
        return [
            Slot(
                storage.key("otp", action, route, keys.digest(kind, value)),
                member,
                self._limit,
                self._window_s,
                self._gap_s,
            )
            for kind, value in self.subjects(ex)
        ]

    def refusal(self, waits: list[float]) -> GatewayError:
        retry_after = max(1, math.ceil(max(waits, default=1.0)))
        return refuse(
            Reason.OTP_RETRY_CAP,
            "too many one-time-password attempts for this number or verification; retry later",
            headers={"Retry-After": str(retry_after)},
            detail=self._action,
        )


class _AsciiDigits(dict[int, str | None]):
    """``str.translate`` table: every Unicode decimal digit to its ASCII digit, format characters
    (zero-width space, joiners, marks) dropped; remembered as characters are met."""

    def __missing__(self, char: int) -> str | None:
        ch = chr(char)
        digit = unicodedata.decimal(ch, None)
        value = str(digit) if digit is not None else (None if unicodedata.category(ch) == "Cf" else ch)
        if len(self) < 4096:  # bounded: a text of rare characters cannot grow it without end
            self[char] = value
        return value


_ASCII_DIGITS: Final = _AsciiDigits()


def shown_as_ascii(text: str) -> str:
    """The text as a reader of the handset sees it, for ``detect``: a message written in full-width
    letters (U+FF43 ``c`` and its kin), mathematical or Arabic-Indic digits, or with zero-width characters in
    a word shows the same code as its ASCII spelling, so it must not slip past the cap."""
    return unicodedata.normalize("NFKC", text).translate(_ASCII_DIGITS)


def build_otp_caps(route: RouteConfig, b: LimitsBuild) -> OtpCaps | None:
    """Kinds otp and otp-check always (defaults when [route.otp] is absent); sms with ``detect``."""
    if route.kind in ("otp", "otp-check"):
        return OtpCaps(b.services.storage, route.name, route.kind, route.otp or OTPConfig(), None)
    if route.kind == "sms" and route.otp is not None and route.otp.detect:
        return OtpCaps(b.services.storage, route.name, route.kind, route.otp, re.compile(route.otp.detect))
    return None
