"""check-config for ``[alerts]``: where alerts go, and rules that could not count as written
(gateway/alerts/anomalies.py, gateway/alerts/conversion.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.callbacks.config import forward_to_problem
from gateway.config import Config, Problem

__all__ = ["alert_checks"]


def alert_checks(config: Config, file: str) -> list[Problem]:
    alerts = config.settings.alerts
    problems: list[Problem] = []
    hook = alerts.webhook
    if hook is not None:
        problem = forward_to_problem(hook.url, plain_http_why=None)
        if problem:
            problems.append(Problem(file, "alerts.webhook.url", problem))
        if hook.ca_file:
            if urlsplit(hook.url).scheme != "https":
                problems.append(Problem(file, "alerts.webhook.ca_file", "applies only to an https:// url"))
            elif not config.resolve_path(hook.ca_file).is_file():
                problems.append(Problem(file, "alerts.webhook.ca_file", f"{hook.ca_file} does not exist"))
    no_key = not config.settings.logging.hash_key_bytes
    for name in ("number_prefix", "conversion"):
        if getattr(alerts, name) is not None and no_key:
            problems.append(
                Problem(
                    file,
                    f"alerts.{name}",
                    "needs logging.hash_key: storage keys numbers and prefixes by an HMAC, "
                    "never in clear text",
                )
            )
    return problems
