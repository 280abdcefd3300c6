"""gateway/commands/keygen.py: random tokens and client credentials an operator can paste into a policy."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from gateway.commands.keygen import basic_credential, random_token
from gateway.identity.basic import BasicAuthenticator
from tests.conftest import basic


@pytest.mark.parametrize(("nbytes", "length"), [(32, 43), (16, 22), (48, 64), (1, 2)])
def test_random_token_shape(nbytes: int, length: int) -> None:
    token = random_token(nbytes)
    assert len(token) == length
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == nbytes


def test_random_token_default_is_32_bytes() -> None:
    assert len(random_token()) == 43


def test_random_tokens_are_unique() -> None:
    assert len({random_token() for _ in range(500)}) == 500


def test_basic_credential() -> None:
    password, digest = basic_credential()
    assert len(password) == 43
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", password)
    assert digest == hashlib.sha256(password.encode()).hexdigest()
    assert basic_credential()[0] != password
    auth = BasicAuthenticator([("svc", digest, "svc-client")])
    assert auth.verify(basic("svc", password)) == "svc-client"
