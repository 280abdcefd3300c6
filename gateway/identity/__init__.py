"""Who is calling and from where: client addresses, allowlists, authenticators."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from gateway.identity import basic, hmac, jwt, mtls
from gateway.identity.auth import AuthenticatorBuilder

#: Route ``auth`` names -> authenticator builders; a kind not here is refused by check-config.
AUTHENTICATORS: Final = MappingProxyType[str, AuthenticatorBuilder](
    {
        "basic": basic.build_basic,
        "jwt": jwt.build_jwt,
        "hmac": hmac.build_hmac,
        "mtls": mtls.build_mtls,
    }
)
