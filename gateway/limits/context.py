"""What the limits need while a policy is compiled: the config and the shared storage.

Declared here, by the feature, so the limits depend on these two things and not on the server
that holds them (gateway/server/policy.py's ``Build`` has both, and satisfies this as it is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.storage.service import StorageService

__all__ = ["LimitsBuild", "LimitsServices"]


class LimitsServices(Protocol):
    @property
    def storage(self) -> StorageService: ...


class LimitsBuild(Protocol):
    @property
    def config(self) -> Config: ...

    @property
    def services(self) -> LimitsServices: ...
