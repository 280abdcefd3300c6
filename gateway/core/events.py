"""The audit log's vocabulary: every ``event`` it writes and every ``detail`` a record carries.

One table each, so a reviewer's query can rely on the names; docs/logs.md ("Audit events",
"Details") is checked against them. A member is its wire string: a record written with one is the
same bytes as with the plain string (``json`` writes a ``str`` subclass as its text).
"""

from __future__ import annotations

from enum import StrEnum


class _Described(StrEnum):
    """A wire string with a one-line meaning (the docs' table row)."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> _Described:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member


class AuditEvent(_Described):
    """Every ``event`` the audit log writes, and when."""

    REQUEST = "request", "every request that matched a route, before anything goes upstream"
    OUTCOME = "outcome", "an allowed send, after the vendor answered or failed"
    CONFIG_LOADED = "config_loaded", "at start, and after each accepted reload"
    CONFIG_WARNING = (
        "config_warning",
        "with each `config_loaded`, once per `check-config` warning (loose file modes, key expiry, …)",
    )
    CONFIG_REJECTED = "config_rejected", "a reload was refused; the old config keeps serving"
    POLICY_WEAKENED = "policy_weakened", "after an accepted reload that loosens the policy"
    CERTIFICATE_RELOADED = "certificate_reloaded", "after each accepted reload (TLS terminated here)"
    ALERT = "alert", "an anomaly rule fired"
    AUDIT_ROTATED = "audit_rotated", "first record of every rotated-to file"
    AUDIT_PURGED = "audit_purged", "retention deleted rotated files"
    GATEWAY_STOPPED = "gateway_stopped", "clean shutdown"
    STORAGE_UNAVAILABLE = (
        "storage_unavailable",
        "the limiter storage failed (written by the storage service), or a webhook route passed a "
        'callback without its duplicate check (`on_error = "open"`)',
    )
    STORAGE_AVAILABLE = "storage_available", "the limiter storage answers again"


#: What a config load, reload, rotation, retention or shutdown writes: the gateway's lifecycle, apart
#: from the records about requests (storage and alert events happen while requests run).
LIFECYCLE_EVENTS = frozenset(
    {
        AuditEvent.CONFIG_LOADED,
        AuditEvent.CONFIG_WARNING,
        AuditEvent.AUDIT_ROTATED,
        AuditEvent.AUDIT_PURGED,
        AuditEvent.CERTIFICATE_RELOADED,
        AuditEvent.CONFIG_REJECTED,
        AuditEvent.POLICY_WEAKENED,
        AuditEvent.GATEWAY_STOPPED,
    }
)


class Detail(_Described):
    """Every ``detail`` an audit record carries (never sent to the client). A member whose meaning
    starts with ``NAME`` is a prefix: the record holds ``prefix:NAME`` (:meth:`of`)."""

    def of(self, name: str) -> str:
        """The detail naming one thing: ``body:GroupIds``, ``country:NG``."""
        return f"{self.value}:{name}"

    # credentials (unauthenticated, ip_not_allowed, forbidden)
    MISSING = "missing", "no credential of a kind the route accepts"
    UNKNOWN_CLIENT = "unknown_client", "the credential names no configured client"
    AMBIGUOUS_CREDENTIALS = "ambiguous_credentials", "more than one credential in one request"
    BAD_CREDENTIALS = "bad_credentials", "a Basic username or password that does not match"
    CLIENT_ALLOWLIST = "client_allowlist", "the address is not in the client's `ip_allow`"
    ROUTE_ALLOWLIST = "route_allowlist", "the address is not in the route's `ip_allow`"
    SCOPE = "scope", "the client (or its token) lacks a scope the route needs"
    NO_CERTIFICATE = "no_certificate", "no client certificate on an `mtls` route"
    UNKNOWN_CERTIFICATE = "unknown_certificate", "a client certificate no client names"
    AMBIGUOUS_CERTIFICATE = "ambiguous_certificate", "a client certificate two clients name"
    OVERSIZED = "oversized", "a token longer than the gateway reads"
    MALFORMED = "malformed", "a token, signature or callback that cannot be parsed"
    WRONG_ISSUER = "wrong_issuer", "a token from no configured issuer"
    WRONG_AUDIENCE = "wrong_audience", "a token for another audience"
    ALGORITHM = "algorithm", "a signature algorithm the issuer or key does not allow"
    UNKNOWN_KEY = "unknown_key", "a key id no configured key has"
    BAD_KEY = "bad_key", "a key that cannot verify the token"
    BAD_SIGNATURE = "bad_signature", "a signature that does not verify"
    EXPIRED = "expired", "past its expiry or outside the signature's tolerance"
    NOT_YET_VALID = "not_yet_valid", "a token before its `nbf`"
    MISSING_CLAIM = "missing_claim", "a token without a required claim"
    MALFORMED_CLAIM = "malformed_claim", "a time claim that is not a finite JSON number"
    LIFETIME_TOO_LONG = "lifetime_too_long", "a token claiming a longer lifetime than allowed"
    UNKNOWN_SUBJECT = "unknown_subject", "a token whose subject is no configured client"
    MISSING_PARAMETER = "missing_parameter", "an HTTP signature without `created`, `keyid` or `nonce`"
    MISSING_COMPONENT = "missing_component", "an HTTP signature that does not cover a required component"
    KEY_EXPIRED = "key_expired", "a signing key past its `expires`"
    CLOCK_SKEW = "clock_skew", "a signature created too far from the gateway's clock"
    SIGNED_BEFORE_START = "signed_before_start", "a signature older than the gateway's start"
    DIGEST_MISMATCH = "digest_mismatch", "a `Content-Digest` that does not match the body"
    REPLAYED = "replayed", "a nonce or callback signature seen before"
    # vendor callbacks
    MISSING_SIGNATURE = "missing_signature", "a callback without its vendor's signature"
    AMBIGUOUS_SIGNATURE = "ambiguous_signature", "a callback signature header given twice"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm", "a callback signed with an algorithm not accepted"
    MALFORMED_TOKEN = "malformed_token", "a callback's signature token that cannot be parsed"
    MISSING_TIMESTAMP = "missing_timestamp", "a callback without its signed timestamp"
    BAD_ISSUER = "bad_issuer", "a callback token from another issuer"
    URL_MISMATCH = "url_mismatch", "a callback signed for another URL"
    BODY_MISMATCH = "body_mismatch", "a callback body its signed hash does not match"
    UNSIGNED_BODY = "unsigned_body", "a callback body the scheme's signature does not cover"
    AMBIGUOUS_FIELD = "ambiguous_field", "a callback gives one of its vendor's fields twice"
    IN_PROGRESS = "in_progress", "a copy of a callback that is being forwarded right now"
    DUPLICATE = "duplicate", "a callback already forwarded (answered 200, not forwarded again)"
    # the request and its body
    MALFORMED_BODY = "malformed_body", "chunked framing broken after the head was read"
    INCOMPLETE_BODY = "incomplete_body", "the client hung up mid-body"
    FIELD = "field", "NAME: a message field given twice or in a spelling a lenient parser folds"
    BODY = "body", "NAME: a body field the vendor's reader does not declare"
    QUERY = "query", "NAME: a query parameter not declared, or a message field in the query"
    CONTROL = "control", "NAME: a control field the route's policy does not allow"
    CHANNEL = "channel", "NAME: a channel the route's policy does not allow"
    CALLBACK_URL = "callback_url", "NAME: a callback URL field the route's policy does not allow"
    # recipients
    COUNTRY = (
        "country",
        "NAME: the region of a recipient outside the client's countries; alone: a per-country rate limit",
    )
    NON_GEOGRAPHIC = "non_geographic", "NAME: the network of a non-geographic recipient (`+881`)"
    NUMBER_TYPE = "number_type", "NAME: a recipient number type the route does not allow"
    # limits, idempotency, alerts
    CLIENT = "client", "a per-client rate limit refused"
    ROUTE = "route", "a per-route rate limit refused"
    NUMBER = "number", "a per-number rate limit refused"
    SENDS = "sends", "an OTP send cap refused"
    CHECKS = "checks", "an OTP check cap refused"
    IDEMPOTENCY_KEY = "idempotency_key", "a malformed `Idempotency-Key`"
    IDEMPOTENCY_UNCONFIGURED = (
        "idempotency_unconfigured",
        "an `Idempotency-Key` to a gateway without `logging.hash_key`",
    )
    UNREADABLE = "unreadable", "a stored idempotent answer that cannot be opened (another key, tampered)"
    DIFFERENT_REQUEST = "different_request", "an `Idempotency-Key` reused for another request"
    IDEMPOTENT_REPLAY = "idempotent_replay", "a repeat answered with the stored answer"
    NOT_SENT = "not_sent", "the vendor connection never opened: nothing was sent"
    AUTH_FAILURES = "auth_failures", "the `auth_failures` alert rule blocked the address"
    CLIENT_VOLUME = "client_volume", "the `client_volume` alert rule blocked the client"
    NUMBER_PREFIX = "number_prefix", "the `number_prefix` alert rule blocked the prefix"
    NEW_COUNTRY = "new_country", "the `new_country` alert rule blocked the country"
    CONVERSION = "conversion", "the pumping guard blocked a subject with low OTP conversion"
    # storage down: refused (on_error = "closed", limiter_unavailable) or passed (on_error = "open")
    RATE_LIMITS = "rate_limits", "storage down: the rate limits could not be checked"
    OTP = "otp", "storage down: the OTP caps could not be checked"
    IDEMPOTENCY = "idempotency", "storage down: the `Idempotency-Key` could not be checked"
    HMAC_NONCE = "hmac_nonce", "storage down: the HTTP signature's nonce could not be checked"
    WEBHOOK_NONCE = "webhook nonce", "storage down: the callback's nonce could not be checked"
    WEBHOOK_DUPLICATES = "webhook duplicates", "storage down: the callback's duplicate check failed"
    LIMITS_SKIPPED = "limits_skipped", "storage down, passed: rate limits and OTP caps not checked"
    NONCE_SKIPPED = "nonce_skipped", "storage down, passed: the HTTP signature's nonce not checked"
    IDEMPOTENCY_SKIPPED = "idempotency_skipped", "storage down, passed: no dedupe, a retry may go twice"
    ALERTS_SKIPPED = "alerts_skipped", "storage down, passed: alert rules not checked"
