"""The vendor callback stages as the policy lists them: signature, fields, duplicates, forwarding.
Each factory takes the route and what it needs of the policy being built."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.callbacks import build as webhook
from gateway.callbacks.forward import CallbackForwarder, ForwardCallback
from gateway.callbacks.scheme import Schemes
from gateway.callbacks.stage import DropDuplicates, ReadCallback, VerifySignature
from gateway.core.pipeline import BuildContext

if TYPE_CHECKING:
    from gateway.audit.log import AuditLog
    from gateway.config import Config
    from gateway.config.schema import RouteConfig
    from gateway.storage.service import StorageService

__all__ = [
    "CallbacksBuild",
    "drop_duplicates",
    "forward_callback",
    "read_callback",
    "verify_signature",
]


class CallbacksServices(Protocol):
    @property
    def storage(self) -> StorageService: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def callbacks(self) -> CallbackForwarder: ...


class CallbacksBuild(BuildContext, Protocol):
    """The config (targets), the schemes, the redactor, and storage, audit log and forwarder."""

    @property
    def config(self) -> Config: ...

    @property
    def services(self) -> CallbacksServices: ...

    @property
    def schemes(self) -> Schemes:
        """The vendors' signature schemes: this framework names no vendor."""
        ...


def verify_signature(route: RouteConfig, b: CallbacksBuild) -> VerifySignature:
    verifier = webhook.verifier(b.schemes, route, b.config)
    return VerifySignature(verifier, b.config.settings.server.public_url, b.services.storage, route.name)


def read_callback(route: RouteConfig, b: CallbacksBuild) -> ReadCallback:
    return ReadCallback(webhook.fields(b.schemes, route, b.config), b.redactor)


def drop_duplicates(route: RouteConfig, b: CallbacksBuild) -> DropDuplicates:
    return DropDuplicates(b.services.storage, b.services.audit, route.name, webhook.pending_ttl(route))


def forward_callback(route: RouteConfig, b: CallbacksBuild) -> ForwardCallback:
    scheme = webhook.scheme(b.schemes, route, b.config).name
    target = webhook.target(route, b.config)
    return ForwardCallback(b.services.callbacks, target, b.services.audit, scheme, route.name)
