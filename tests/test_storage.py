"""gateway/storage/service.py: the key-value contract every shared decision uses, and the on_error policy."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gateway.config.schema import StorageConfig
from gateway.storage.service import (
    KeyValue,
    MemoryKeyValue,
    StorageKeys,
    StorageService,
    StorageUnavailable,
    open_storage,
    slot_wait,
)
from tests.conftest import RedisServer


async def test_set_if_absent_stores_once() -> None:
    kv = MemoryKeyValue()
    assert await kv.set_if_absent("smsgw:nonce:a", b"1", 60) is True
    assert await kv.set_if_absent("smsgw:nonce:a", b"2", 60) is False  # a replayed nonce
    assert await kv.get("smsgw:nonce:a") == b"1"
    await kv.delete("smsgw:nonce:a")
    assert await kv.get("smsgw:nonce:a") is None
    assert await kv.set_if_absent("smsgw:nonce:a", b"3", 60) is True


async def test_an_expired_key_is_gone() -> None:
    kv = MemoryKeyValue()
    await kv.set("k", b"v", 0)  # expires at once
    assert await kv.get("k") is None
    assert await kv.set_if_absent("k", b"w", 60) is True


async def test_memory_is_bounded() -> None:
    kv = MemoryKeyValue(max_keys=10)
    for i in range(9):
        await kv.set(f"k{i}", b"v", 60)
    with pytest.raises(StorageUnavailable):
        for i in range(9, 20):
            await kv.set(f"k{i}", b"v", 60)
    # Expired keys make room again.
    kv2 = MemoryKeyValue(max_keys=10)
    for i in range(20):
        await kv2.set(f"k{i}", b"v", 0)
    assert await kv2.ping() is True


def test_on_error_closed_refuses_and_open_passes() -> None:
    closed = StorageService(MemoryKeyValue(), prefix="smsgw:", on_error="closed")
    error = closed.unavailable("rate_limit")
    assert error is not None and (error.status, error.code) == (503, "limiter_unavailable")
    assert error.detail == "rate_limit"
    opened = StorageService(MemoryKeyValue(), prefix="smsgw:", on_error="open")
    assert opened.unavailable("rate_limit") is None
    assert (closed.errors, opened.errors) == (1, 1)
    assert closed.key("otp", "abc") == "smsgw:otp:abc"


# -- keys for what goes into storage ---------------------------------------------------------------

KEY = b"k" * 16 + b"0123456789abcdef"


def test_digest_is_keyed_stable_and_unambiguous() -> None:
    keys = StorageKeys(KEY)
    assert keys.digest("number", "+37255512367") == StorageKeys(KEY).digest("number", "+37255512367")
    assert len(keys.digest("number", "+37255512367")) == 32
    assert keys.digest("number", "+37255512367") != StorageKeys(KEY[::-1]).digest("number", "+37255512367")
    # Parts are length-prefixed: moving a boundary gives another name.
    assert keys.digest("ab", "c") != keys.digest("a", "bc")
    assert keys.digest("a", b"b") == keys.digest("a", "b")
    # Not the log's recipient hash (HMAC with hash_key itself), so the two cannot be joined.
    log_hash = hmac.new(KEY, b"+37255512367", hashlib.sha256).hexdigest()
    assert keys.digest("number", "+37255512367") not in log_hash


def test_digest_names_stay_those_already_in_storage() -> None:
    """Counters and stored answers written before an upgrade keep their names."""
    ids = hmac.new(KEY, b"smsgw storage identifiers v1", hashlib.sha256).digest()
    mac = hmac.new(ids, digestmod=hashlib.sha256)
    for part in (b"number", b"+37255512367"):
        mac.update(len(part).to_bytes(8, "big") + part)
    keys = StorageKeys(KEY)
    assert keys.digest("number", "+37255512367") == mac.hexdigest()[:32]
    assert keys.digest("number", "+37255512367") == mac.hexdigest()[:32]  # the keyed start is not used up


def test_seal_open() -> None:
    keys = StorageKeys(KEY)
    blob = keys.seal(b'{"to": "+37255512367"}', "smsgw:idem:x")
    assert b"37255512367" not in blob
    assert keys.open(blob, "smsgw:idem:x") == b'{"to": "+37255512367"}'
    assert keys.open(blob, "smsgw:idem:y") is None  # bound to its key
    assert StorageKeys(KEY[::-1]).open(blob, "smsgw:idem:x") is None  # a rotated hash_key
    assert keys.open(blob[:-1] + bytes([blob[-1] ^ 1]), "smsgw:idem:x") is None
    assert keys.open(b"", "smsgw:idem:x") is None


# -- OTP slots: the sliding log ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "limit", "window", "gap", "wait"),
    [
        ([], 3, 900, 0, 0.0),
        ([100.0, 200.0], 3, 900, 0, 0.0),
        ([100.0, 200.0, 300.0], 3, 900, 0, 0.0),  # 100 left the window at 1000 (it is (100, 1000])
        ([150.0, 200.0, 300.0], 3, 900, 0, 50.0),  # the oldest leaves at 1050
        ([150.0, 200.0, 300.0], 2, 900, 0, 100.0),  # one more must leave: 200, at 1100
        ([990.0], 3, 900, 30, 20.0),  # resend interval
        ([50.0, 990.0], 2, 900, 30, 20.0),  # 50 is out of the window; only the interval holds
        ([200.0, 990.0], 2, 900, 30, 100.0),  # both: the later wins
    ],
)
def test_slot_wait(times: list[float], limit: int, window: float, gap: float, wait: float) -> None:
    assert slot_wait(1000.0, times, limit, window, gap) == pytest.approx(max(0.0, wait))


async def _slots_behave(kv: KeyValue) -> None:
    assert [await kv.take_slot("smsgw:otp:a", m, 2, 10, 0) for m in ("m1", "m2")] == [0.0, 0.0]
    wait = await kv.take_slot("smsgw:otp:a", "m3", 2, 10, 0)
    assert 9 < wait <= 10
    await kv.free_slot("smsgw:otp:a", "m2")  # a send that never happened gives its slot back
    assert await kv.take_slot("smsgw:otp:a", "m4", 2, 10, 0) == 0.0
    assert await kv.take_slot("smsgw:otp:b", "m1", 5, 60, 30) == 0.0
    assert 29 < await kv.take_slot("smsgw:otp:b", "m2", 5, 60, 30) <= 30


async def test_memory_slots() -> None:
    await _slots_behave(MemoryKeyValue())


async def test_redis_contract(redis_server: RedisServer) -> None:
    service = open_storage(StorageConfig(url=redis_server.url), KEY)
    kv = service.kv
    try:
        assert await kv.set_if_absent("smsgw:nonce:a", b"1", 60) is True
        assert await kv.set_if_absent("smsgw:nonce:a", b"2", 60) is False
        assert await kv.get("smsgw:nonce:a") == b"1"
        await kv.set("smsgw:x", b"v", 60)
        assert 59_000 < redis_server.client().pttl("smsgw:x") <= 60_000  # every write has a TTL
        await kv.delete("smsgw:x")
        assert await kv.get("smsgw:x") is None
        await _slots_behave(kv)
        assert redis_server.client().pttl("smsgw:otp:a") > 0
    finally:
        await service.close()


async def test_redis_outage_is_storage_unavailable_and_recovers(redis_server: RedisServer) -> None:
    service = open_storage(StorageConfig(url=redis_server.url, timeout_s=0.5), KEY)
    events: list[tuple[str, dict]] = []
    service.events = lambda name, **fields: events.append((name, fields))
    try:
        assert await service.check() is True
        redis_server.stop()
        with pytest.raises(StorageUnavailable):
            await service.kv.get("smsgw:a")
        assert service.up is False
        # While down, calls fail at once without going to Redis.
        with pytest.raises(StorageUnavailable, match="down"):
            await service.kv.set("smsgw:a", b"v", 1)
        redis_server.start()
        assert await service.check() is True
        assert await service.kv.set_if_absent("smsgw:a", b"v", 10) is True
        assert [name for name, _ in events] == ["storage_unavailable", "storage_available"]
        assert events[0][1] == {"backend": "redis", "on_error": "closed", "during": "get"}
    finally:
        await service.close()


async def test_redis_password_from_storage_password(redis_server: RedisServer) -> None:
    redis_server.client().config_set("requirepass", "redis-pass-7e1d")
    without = open_storage(StorageConfig(url=redis_server.url), KEY)
    with_password = open_storage(StorageConfig(url=redis_server.url, password="redis-pass-7e1d"), KEY)
    try:
        assert await without.check() is False
        assert await with_password.check() is True
        assert await with_password.kv.set_if_absent("smsgw:p", b"1", 5) is True
    finally:
        await without.close()
        await with_password.close()


def test_every_redis_url_builds_a_storage_without_connecting() -> None:
    from limits.aio.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage

    for url, kind in (
        ("redis://127.0.0.1:1/0", RedisStorage),
        ("rediss://cache.internal:6380/0", RedisStorage),
        ("redis+sentinel://127.0.0.1:1,127.0.0.1:2/gw", RedisSentinelStorage),
        ("redis+cluster://127.0.0.1:1,127.0.0.1:2", RedisClusterStorage),
    ):
        service = open_storage(StorageConfig(url=url), None)
        assert type(service.limiter) is kind
        assert service.scheme == url.partition("://")[0]
        assert service.keys is None
