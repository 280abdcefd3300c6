"""OTP retry caps: how often one number may be sent a code, and how often a code may be tried.

Applies to routes of ``kind = "otp"`` (every request is a send), to ``kind = "sms"`` messages
whose text matches ``route.otp.detect`` (compiled once, at policy build), and to
``kind = "otp-check"`` routes (verification checks). Per number and route, in storage:

- sends: at most ``max_sends`` within any ``window``, and at least ``min_interval`` after the
  previous send;
- checks: at most ``max_checks`` within any ``window``.

The window slides (a log of timestamps, not a counter that resets), so ``Retry-After`` is exact:
the moment the oldest counted attempt leaves the window, or the previous send is
``min_interval`` old, whichever is later. Numbers are keyed by an HMAC of their E.164 form.

An attempt counts only if the request may have reached the vendor: a request refused after this
stage (the audit log) or whose vendor connection never opened gives its slot back, and rate limits
run before this stage, so a user never loses a send to a refusal.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import TYPE_CHECKING, Final

from aiohttp import web

from gateway.config.schema import OTPConfig, parse_duration
from gateway.errors import bad_request, refuse
from gateway.exchange import Exchange
from gateway.limits import gather
from gateway.proxy import may_have_reached_vendor
from gateway.storage import StorageService, StorageUnavailable, skipped

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.policy import Build

__all__ = ["OtpCaps", "build_otp_caps"]


class OtpCaps:
    """Stage: take one slot per number, or refuse with the exact wait (429 ``otp_retry_cap``)."""

    name = "otp"
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
            self._action, self._limit, self._gap_s = "checks", cfg.max_checks, 0.0
        else:
            self._action, self._limit = "sends", cfg.max_sends
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

    async def run(self, ex: Exchange) -> None:
        if not self.applies(ex):
            return
        numbers = sorted({d.e164 for d in ex.destinations})
        if not numbers:
            raise bad_request("an OTP request must name the number it is for")
        storage = self._storage
        keys = storage.keys
        assert keys is not None  # check-config requires logging.hash_key for OTP caps
        route, action = self._route_name, self._action
        slots = [storage.key("otp", action, route, keys.digest("number", e164)) for e164 in numbers]
        member = ex.request_id
        try:
            storage.check_up()
            waits = await gather(
                storage.kv.take_slot(slot, member, self._limit, self._window_s, self._gap_s) for slot in slots
            )
        except StorageUnavailable:
            error = storage.unavailable("otp")
            if error is not None:
                raise error from None
            ex.detail = skipped(ex.detail, "limits_skipped")
            return
        taken = [slot for slot, wait in zip(slots, waits, strict=True) if wait <= 0]
        if len(taken) < len(slots):
            await self._free(ex, taken)
            retry_after = max(1, math.ceil(max(waits)))
            raise refuse(
                "otp_retry_cap",
                "too many one-time-password attempts for this number; retry later",
                headers={"Retry-After": str(retry_after)},
                detail=self._action,
            )
        ex.held[self.name] = taken

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None:
        taken = ex.held.pop(self.name, None)
        if taken and not may_have_reached_vendor(ex):
            await self._free(ex, taken)

    async def _free(self, ex: Exchange, slots: list[str]) -> None:
        if not slots:
            return
        try:
            await gather(self._storage.kv.free_slot(slot, ex.request_id) for slot in slots)
        except StorageUnavailable:
            pass  # the slot stays counted until it leaves the window: errs towards refusing


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


def build_otp_caps(route: RouteConfig, b: Build) -> OtpCaps | None:
    """Kinds otp and otp-check always (defaults when [route.otp] is absent); sms with ``detect``."""
    if route.kind in ("otp", "otp-check"):
        return OtpCaps(b.services.storage, route.name, route.kind, route.otp or OTPConfig(), None)
    if route.kind == "sms" and route.otp is not None and route.otp.detect:
        return OtpCaps(b.services.storage, route.name, route.kind, route.otp, re.compile(route.otp.detect))
    return None
