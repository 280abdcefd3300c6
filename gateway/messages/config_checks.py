"""check-config for a route's ``allow_fields``: each must name a control or callback field that the
route's reader declares (gateway/messages/fields.py); a callback field needs ``server.public_url``
and a webhook route for the vendor to call."""

from __future__ import annotations

from gateway.config import Config, Located, Problem
from gateway.config.schema import RouteConfig
from gateway.messages.fields import FieldTable

__all__ = ["allow_fields_problems"]


def allow_fields_problems(
    config: Config, route: RouteConfig, table: FieldTable | None, where: Located
) -> list[Problem]:
    problems: list[Problem] = []
    if table is None:
        if route.allow_fields:
            problems.append(
                Problem(where.file, f"{where.key}.allow_fields", "this route's reader declares no fields")
            )
        return problems
    callbacks = {_display_name(f.name) for f in table.fields if f.role == "callback_url"}
    for i, name in enumerate(route.allow_fields):
        key = f"{where.key}.allow_fields[{i}]"
        if name.lstrip("/") not in table.control_names:
            known = ", ".join(sorted(table.control_names)) or "none"
            problems.append(
                Problem(
                    where.file,
                    key,
                    f"{name!r} is not a control or callback field of this route's vendor API "
                    f"(known: {known})",
                )
            )
        elif name.lstrip("/") in callbacks:
            webhooks = [r for r in config.routes if r.kind == "webhook"]
            if not config.settings.server.public_url or not webhooks:
                problems.append(
                    Problem(
                        where.file,
                        key,
                        f"{name!r} is a callback URL: it may only name this gateway's own callback route, "
                        "so it needs server.public_url and a webhook route",
                    )
                )
    return problems


def _display_name(name: str) -> str:
    return name[1:] if name.startswith("/") else name
