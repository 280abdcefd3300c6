"""Every request's id (``X-Request-ID``, the access and audit records) is a fresh random UUID,
written as 32 hex digits."""

from __future__ import annotations

import uuid

from gateway.core.oplog import new_request_id


def test_a_request_id_is_a_version_4_uuid_in_32_hex_digits() -> None:
    for _ in range(200):
        request_id = new_request_id()
        parsed = uuid.UUID(request_id)
        assert request_id == parsed.hex
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_request_ids_do_not_repeat() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
