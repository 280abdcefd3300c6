"""The stages of a webhook route: verify the vendor's signature, read what the callback is about,
drop duplicates. (Forwarding is in ``forward.py``.)

Order and answers (``gateway/server/policy.py`` lists the chain): a missing or bad signature is 401
``unauthenticated`` (``detail``: ``missing_signature``, ``bad_signature``, ``expired``,
``body_mismatch``, ``url_mismatch``, ``replayed``, ...) and nothing is forwarded; a body the
signature scheme cannot read is 400; a duplicate (same vendor message id and status, and the same
numbers, within 24 hours) is answered 200 without forwarding. Only ids the signature covers count:
a scheme that signs no field (Plivo V2) is never deduplicated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web

from gateway.audit.log import AuditLog, AuditUnavailable
from gateway.callbacks.base import MALFORMED, NOWHERE, SignatureError, SignedRequest, Verified, Verifier
from gateway.callbacks.events import AmbiguousField, EventFields, read_event
from gateway.core.errors import GatewayError, Reason, bad_request, refuse
from gateway.core.events import AuditEvent, Detail
from gateway.core.exchange import Exchange, SyncStage
from gateway.core.redaction import Redactor
from gateway.recipients.phone import parse_recipient
from gateway.storage.service import StorageService, StorageUnavailable

__all__ = ["DUPLICATE_WINDOW_S", "DropDuplicates", "ReadCallback", "VerifySignature", "e164_of"]

DUPLICATE_WINDOW_S: Final = 24 * 3600
#: A nonce of a scheme that does not sign the body stays bound to its body this long.
NONCE_WINDOW_S: Final = 7 * 24 * 3600
PENDING: Final = b"pending"
MAX_OPEN_CLAIMS: Final = 100_000
DONE: Final = b"done"


def _refusal(exc: SignatureError) -> GatewayError:
    if exc.detail == MALFORMED:
        return bad_request(
            "the callback could not be read as its signature scheme requires", detail=MALFORMED
        )
    return refuse(Reason.UNAUTHENTICATED, "the callback's signature is not valid", detail=exc.detail)


class VerifySignature:
    """The vendor's signature over the URL it called (rebuilt from ``server.public_url``, never
    from ``Host``), the headers and the raw body."""

    name = "verify_signature"
    __slots__ = ("_clock", "_public_url", "_route", "_storage", "_verify")

    def __init__(
        self,
        verify: Verifier,
        public_url: str,
        storage: StorageService,
        route: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verify = verify
        self._public_url = public_url
        self._storage = storage
        self._route = route
        self._clock = clock

    async def run(self, ex: Exchange) -> None:
        request = ex.request
        signed = SignedRequest(
            request.method,
            self._public_url + request.raw_path,
            request.headers,
            ex.body or b"",
            request.headers.get("Content-Type", ""),
        )
        try:
            verified = self._verify(signed, self._clock())
        except SignatureError as exc:
            raise _refusal(exc) from None
        except UnicodeError:  # bytes that are not UTF-8 in a header or the query: nothing to verify
            raise _refusal(SignatureError(MALFORMED)) from None
        ex.signature = verified
        if verified.replay_nonce is not None:
            await self._bind_nonce(verified.replay_nonce, signed)

    async def _bind_nonce(self, nonce: str, signed: SignedRequest) -> None:
        """A nonce comes back (a vendor retry) only with the bytes it first came with."""
        storage = self._storage
        key = storage.key("webhook-nonce", self._route, hashlib.sha256(nonce.encode()).hexdigest()[:40])
        fingerprint = hashlib.sha256(
            b"\n".join((signed.method.encode(), signed.url.encode("utf-8", "surrogateescape"), signed.body))
        ).digest()
        try:
            if await storage.kv.set_if_absent(key, fingerprint, NONCE_WINDOW_S):
                return
            seen = await storage.kv.get(key)
        except StorageUnavailable:
            refusal = storage.unavailable(Detail.WEBHOOK_NONCE)
            if refusal is not None:
                raise refusal from None
            return
        if seen is not None and not hmac.compare_digest(seen, fingerprint):
            raise refuse(
                Reason.UNAUTHENTICATED, "the callback's signature is not valid", detail=Detail.REPLAYED
            )


def e164_of(raw: str) -> str | None:
    """The E.164 form of a number a vendor wrote with or without ``+`` (Vonage's ``msisdn``)."""
    text = raw.strip()
    if text.isdigit() and 7 <= len(text) <= 15:
        text = "+" + text
    try:
        return parse_recipient(text).e164
    except GatewayError:
        return None


class ReadCallback(SyncStage):
    """The vendor's message id and status (for duplicates and the audit record) and the numbers
    and text the callback carries, for the audit record only through the Redactor; read only
    where the signature covers the vendor's own fields (``events.read_event``). One of the
    vendor's field names given twice there is 400 ``bad_request`` (``ambiguous_field``)."""

    name = "read_callback"
    __slots__ = ("_fields", "_redactor")

    def __init__(self, fields: EventFields, redactor: Redactor) -> None:
        self._fields = fields
        self._redactor = redactor

    def run_sync(self, ex: Exchange) -> None:
        request = ex.request
        # Without a verified signature (never: the verify stage comes first) nothing is trusted.
        verified = ex.signature or Verified(NOWHERE, query_signed=False)
        try:
            event = read_event(
                self._fields,
                verified,
                request.raw_path.partition("?")[2],
                ex.body or b"",
                request.headers.get("Content-Type", ""),
            )
        except AmbiguousField:
            raise bad_request(
                "the callback gives one of its vendor's fields twice", detail=Detail.AMBIGUOUS_FIELD
            ) from None
        ex.callback = event
        ex.vendor_message_id = event.log_message_id
        ex.vendor_status = event.log_status
        if event.numbers:
            ex.log_recipients = self._redactor.recipients([(n, e164_of(n)) for n in event.numbers])
            ex.recipient_count = len(event.numbers)
        if event.text is not None:
            ex.log_body = self._redactor.body(event.text)


class DropDuplicates:
    """Vendors deliver a callback again when they are unsure it arrived. The first delivery of a
    (message id, status, numbers) holds a short ``pending`` claim while it is forwarded; a 2xx
    from the internal service turns it into ``done`` for 24 hours, anything else releases it so
    the vendor's retry goes through. A copy arriving meanwhile is answered 409 (the vendor tries
    again later); a copy of a ``done`` one is answered 200 and not forwarded."""

    name = "duplicates"
    __slots__ = ("_audit", "_claims", "_pending_ttl", "_route", "_storage")

    def __init__(self, storage: StorageService, audit: AuditLog, route: str, pending_ttl_s: float) -> None:
        self._storage = storage
        self._audit = audit
        self._route = route
        self._pending_ttl = pending_ttl_s
        self._claims: dict[str, str] = {}  # request id -> the key it claimed, until ``after``

    def _key(self, ex: Exchange) -> str | None:
        event = ex.callback
        if event is None or not event.message_id or not event.verified:
            return None  # an id the signature does not cover must not drop another callback
        identity = json.dumps([event.message_id, event.status or "", sorted(event.numbers)])
        return self._storage.key("webhook", self._route, hashlib.sha256(identity.encode()).hexdigest()[:40])

    async def run(self, ex: Exchange) -> web.StreamResponse | None:
        key = self._key(ex)
        if key is None:
            return None
        kv = self._storage.kv
        try:
            state = None
            for _ in range(2):  # a claim that expires between the two calls is taken on the second try
                if await kv.set_if_absent(key, PENDING, self._pending_ttl):
                    if len(self._claims) >= MAX_OPEN_CLAIMS:  # ``after`` never ran for some: forget them,
                        self._claims.clear()  # their claims expire on their own
                    self._claims[ex.request_id] = key
                    return None
                state = await kv.get(key)
                if state is not None:
                    break
        except StorageUnavailable:
            refusal = self._storage.unavailable(Detail.WEBHOOK_DUPLICATES)
            if refusal is not None:
                raise refusal from None
            self._audit.event(
                AuditEvent.STORAGE_UNAVAILABLE,
                request_id=ex.request_id,
                route=self._route,
                what=Detail.WEBHOOK_DUPLICATES,
                on_error="open",
            )
            return None
        if state != DONE:
            raise refuse(
                Reason.CALLBACK_IN_PROGRESS,
                "the same callback is being delivered; try again later",
                headers={"Retry-After": "5"},
                detail=Detail.IN_PROGRESS,
            )
        ex.status, ex.detail = 200, Detail.DUPLICATE
        try:
            self._audit.decision(ex, "allow")
        except AuditUnavailable:
            raise refuse(Reason.AUDIT_UNAVAILABLE, "the audit log cannot be written") from None
        return web.Response(status=200)

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None:
        key = self._claims.pop(ex.request_id, None)
        if key is None:
            return
        try:
            if 200 <= response.status < 300:
                await self._storage.kv.set(key, DONE, DUPLICATE_WINDOW_S)
            else:
                await self._storage.kv.delete(key)
        except StorageUnavailable:
            self._storage.unavailable(Detail.WEBHOOK_DUPLICATES)
