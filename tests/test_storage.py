"""gateway/storage.py: the key-value contract every shared decision uses, and the on_error policy."""

from __future__ import annotations

import pytest

from gateway.storage import MemoryKeyValue, StorageService, StorageUnavailable


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
