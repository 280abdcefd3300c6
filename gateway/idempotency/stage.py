"""``Idempotency-Key``: a client may repeat a send safely; the vendor gets it once.

Per client: the first request with a key claims it in storage (an *in-flight* record) and goes
on; when it is answered, ``after`` settles the claim:

- the vendor answered: its answer (status, headers, body, at most :data:`MAX_ANSWER_BYTES`) is
  stored for :data:`TTL_S` (24 h) and a repeat gets it back with ``Idempotent-Replayed: true``;
- the request may have reached the vendor but no answer came (504 ``upstream_timeout``, a 502
  after the connection opened, a gateway fault while forwarding): that refusal is stored and
  replayed, because the vendor may have sent the SMS: forwarding a repeat could send it twice.
  A client that wants to try again anyway uses a new key;
- nothing reached the vendor (any refusal before forwarding, or a 502 whose connection never
  opened): the claim is dropped, so a repeat is forwarded as if it were the first.

A repeat whose method, path, ``Content-Type`` or body differ gets 422 ``idempotency_mismatch``; a
repeat while the first is still in flight gets 409 ``idempotency_in_flight``. Records hold no
clear text: the key and the request are HMACs, the answer (which names the recipient) is sealed
with AES-256-GCM; both keys derive from ``logging.hash_key``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web
from multidict import CIMultiDict

from gateway.audit.log import AuditLog, AuditUnavailable
from gateway.core.errors import Reason, bad_request, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.storage.service import StorageKeys, StorageService, StorageUnavailable, skipped
from gateway.transport.proxy import may_have_reached_vendor

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.config.schema import RouteConfig

__all__ = ["HEADER", "MAX_ANSWER_BYTES", "TTL_S", "Idempotency", "IdempotencyBuild", "build_idempotency"]


class IdempotencyServices(Protocol):
    @property
    def storage(self) -> StorageService: ...

    @property
    def audit(self) -> AuditLog: ...


class IdempotencyBuild(Protocol):
    """What the stage needs while a policy is compiled (server/policy.py's ``Build`` has it)."""

    @property
    def config(self) -> Config: ...

    @property
    def services(self) -> IdempotencyServices: ...


HEADER: Final = "Idempotency-Key"
REPLAYED: Final = "Idempotent-Replayed"
TTL_S: Final = 24 * 3600
MAX_ANSWER_BYTES: Final = 64 * 1024
#: Visible ASCII, as Stripe and the IETF draft's examples use (a UUID fits many times over).
_KEY_TEXT: Final = re.compile(r"[\x21-\x7e]{1,255}")
#: Headers the gateway sets on every answer itself; never stored.
_NOT_STORED: Final = frozenset({"content-length", "x-request-id", "date"})


class Idempotency:
    """Stage: claim the key, or answer a repeat (replay, 409, 422) without forwarding it."""

    name = "idempotency"
    __slots__ = ("_audit", "_in_flight_ttl_s", "_storage")

    def __init__(self, storage: StorageService, audit: AuditLog, in_flight_ttl_s: float) -> None:
        self._storage = storage
        self._audit = audit
        self._in_flight_ttl_s = in_flight_ttl_s

    async def run(self, ex: Exchange) -> web.StreamResponse | None:
        request = ex.request
        values = request.headers.getall(HEADER, ())
        if not values:
            return None
        if len(values) > 1 or not _KEY_TEXT.fullmatch(values[0]):
            raise bad_request(
                "Idempotency-Key must be given once, as 1 to 255 visible ASCII characters",
                detail=Detail.IDEMPOTENCY_KEY,
            )
        keys = self._storage.keys
        if keys is None:
            raise bad_request(
                "this gateway cannot honour Idempotency-Key (it has no logging.hash_key)",
                detail=Detail.IDEMPOTENCY_UNCONFIGURED,
            )
        assert ex.client is not None
        key = self._storage.key("idem", keys.digest("idempotency", ex.client.id, values[0]))
        fingerprint = _fingerprint_of(ex, keys)
        claim = _seal(keys, key, {"state": "in_flight", "fp": fingerprint})
        kv = self._storage.kv
        stored: bytes | None = None
        try:
            self._storage.check_up()
            for _ in range(2):  # a record that expires between the two calls: claim again
                if await kv.set_if_absent(key, claim, self._in_flight_ttl_s):
                    ex.held[self.name] = key
                    return None
                stored = await kv.get(key)
                if stored is not None:
                    break
        except StorageUnavailable:
            error = self._storage.unavailable(Detail.IDEMPOTENCY)
            if error is not None:
                raise error from None
            ex.detail = skipped(ex.detail, Detail.IDEMPOTENCY_SKIPPED)
            return None
        record = _open(keys, key, stored) if stored is not None else {"state": "in_flight", "fp": fingerprint}
        if record is None or record.get("fp") != fingerprint:
            raise refuse(
                Reason.IDEMPOTENCY_MISMATCH,
                "this Idempotency-Key was used for a different request",
                detail=Detail.UNREADABLE if record is None else Detail.DIFFERENT_REQUEST,
            )
        if record.get("state") != "done":
            raise refuse(
                Reason.IDEMPOTENCY_IN_FLIGHT, "a request with this Idempotency-Key is still in progress"
            )
        return self._replay(ex, record)

    def _replay(self, ex: Exchange, record: dict[str, Any]) -> web.Response:
        if record.get("too_large"):
            raise refuse(
                Reason.UPSTREAM_UNAVAILABLE,
                "the vendor's answer to the first request was too large to keep",
                headers={REPLAYED: "true"},
                detail=Detail.IDEMPOTENT_REPLAY,
            )
        ex.status = int(record["status"])
        ex.detail = Detail.IDEMPOTENT_REPLAY
        try:
            self._audit.decision(ex, "allow")  # nothing goes upstream; recorded as answered
        except AuditUnavailable:
            pass  # the sink has counted and reported it; a replay sends nothing
        headers: CIMultiDict[str] = CIMultiDict((str(k), str(v)) for k, v in record["headers"])
        headers[REPLAYED] = "true"
        return web.Response(status=ex.status, body=base64.b64decode(record["body"]), headers=headers)

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None:
        key = ex.held.pop(self.name, None)
        if key is None:
            return
        keys = self._storage.keys
        assert keys is not None
        kv = self._storage.kv
        try:
            if not may_have_reached_vendor(ex):
                await kv.delete(key)  # nothing was sent: a repeat may go
                return
            await kv.set(key, _seal(keys, key, _answer_record(ex, response, keys)), TTL_S)
        except StorageUnavailable:
            # The in-flight claim stays until it expires: repeats get 409 meanwhile, never a
            # second send while the first may still be on its way.
            pass


def _answer_record(ex: Exchange, response: web.StreamResponse, keys: StorageKeys) -> dict[str, Any]:
    body = response.body if isinstance(response, web.Response) else None
    fingerprint = _fingerprint_of(ex, keys)
    if not isinstance(body, bytes) or len(body) > MAX_ANSWER_BYTES:
        return {"state": "done", "fp": fingerprint, "too_large": True}
    return {
        "state": "done",
        "fp": fingerprint,
        "status": response.status,
        "headers": [[k, v] for k, v in response.headers.items() if k.lower() not in _NOT_STORED],
        "body": base64.b64encode(body).decode("ascii"),
    }


def _fingerprint_of(ex: Exchange, keys: StorageKeys) -> str:
    """What makes a repeat the same request: method, path and query as sent, body and its type."""
    request = ex.request
    return keys.digest(
        "request", ex.method, request.raw_path, request.headers.get("Content-Type", ""), ex.body or b""
    )


def _seal(keys: StorageKeys, key: str, record: dict[str, Any]) -> bytes:
    return keys.seal(json.dumps(record, separators=(",", ":")).encode("utf-8"), key)


def _open(keys: StorageKeys, key: str, blob: bytes) -> dict[str, Any] | None:
    data = keys.open(blob, key)
    if data is None:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def build_idempotency(route: RouteConfig, b: IdempotencyBuild) -> Idempotency:
    s = b.config.settings
    in_flight_ttl = s.upstream.timeout_s + 4 * s.storage.timeout_s + 10
    return Idempotency(b.services.storage, b.services.audit, in_flight_ttl)
