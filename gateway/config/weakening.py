"""What a new config loosens compared with the one it replaces.

A reload that widens who may send, from where, to where or how often is legal, and sometimes
meant; it is also what an attacker with write access to the policy files would do. So each one is
named: the reload logs a warning and writes a ``policy_weakened`` audit event, and
``smsgw check-config --against OLD`` prints the same list before anything is deployed.

:func:`weakenings` is pure: two loaded configs in, a list out. It compares clients by ``id`` and
routes by ``name``; a client or route that is new has nothing to be compared with and is not
listed (its own ``check-config`` rules apply), nor is one that was removed (that only closes).
Every message names keys, ids, CIDRs, country codes, rates and scopes, never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import netaddr
from limits import parse_many

from gateway.config.loaded import Config, Located
from gateway.config.problems import display
from gateway.config.schema import ClientConfig, RouteConfig

__all__ = ["BODY_STRENGTH", "RECIPIENT_STRENGTH", "Weakening", "weakenings"]

#: ``logging.body`` modes, strongest first: ``drop`` keeps nothing; ``redact`` the length;
#: ``hash`` lets a key holder confirm a guessed text; ``seal`` lets a private-key holder read it;
#: ``mask`` writes the text with only its digits starred.
BODY_STRENGTH: Final[tuple[str, ...]] = ("drop", "redact", "hash", "seal", "mask")
#: ``logging.recipient`` modes, strongest first: ``mask`` shows part of the number.
RECIPIENT_STRENGTH: Final[tuple[str, ...]] = ("drop", "hash", "mask")


@dataclass(frozen=True, slots=True)
class Weakening:
    """One loosening: where the new config says it (file, dotted key), whose it is, and what."""

    file: str
    key: str
    #: ``client``, ``route`` or ``settings``.
    kind: str
    #: The client id or route name; empty for the main file's settings.
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: weakened: {self.message}"

    def as_record(self) -> dict[str, str]:
        """The audit event's entry: ``file``, ``key``, ``client`` or ``route``, ``change``."""
        record = {"file": self.file, "key": self.key}
        if self.name:
            record[self.kind] = self.name
        record["change"] = self.message
        return record


def weakenings(old: Config, new: Config) -> list[Weakening]:
    """Every way ``new`` allows more than ``old``, in file order (settings, clients, routes)."""
    found = _settings(old, new)
    old_clients = {c.id: c for c in old.clients}
    for client, where in zip(new.clients, new.client_sources, strict=True):
        before = old_clients.get(client.id)
        if before is not None:
            found.extend(_client(before, client, where))
    old_routes = {r.name: r for r in old.routes}
    for route, where in zip(new.routes, new.route_sources, strict=True):
        before_route = old_routes.get(route.name)
        if before_route is not None:
            found.extend(_route(before_route, route, where))
    return found


# --------------------------------------------------------------------------- the main file


def _settings(old: Config, new: Config) -> list[Weakening]:
    file = display(new.path)
    a, b = old.settings, new.settings
    found: list[Weakening] = []

    def add(key: str, message: str) -> None:
        found.append(Weakening(file, key, "settings", "", message))

    if a.storage.on_error == "closed" and b.storage.on_error == "open":
        add("storage.on_error", "closed -> open: requests pass unlimited while the limiter storage is down")
    if _weaker(BODY_STRENGTH, a.logging.body, b.logging.body):
        add("logging.body", f"{a.logging.body} -> {b.logging.body}: message texts are kept more readably")
    if _weaker(RECIPIENT_STRENGTH, a.logging.recipient, b.logging.recipient):
        add(
            "logging.recipient",
            f"{a.logging.recipient} -> {b.logging.recipient}: numbers are kept more readably",
        )
    added = _added_addresses(a.server.trusted_proxies, b.server.trusted_proxies)
    if added:
        add("server.trusted_proxies", f"now also trusts X-Forwarded-For from {added}")
    return found


def _weaker(order: Sequence[str], before: str, after: str) -> bool:
    return order.index(after) > order.index(before)


# --------------------------------------------------------------------------- clients


def _client(old: ClientConfig, new: ClientConfig, where: Located) -> list[Weakening]:
    found: list[Weakening] = []

    def add(key: str, message: str) -> None:
        found.append(Weakening(where.file, f"{where.key}.{key}", "client", new.id, message))

    ip = _ip_change(old.ip_allow, new.ip_allow)
    if ip:
        add("ip_allow", ip)
    countries = _countries_change(old.countries, new.countries)
    if countries:
        add("countries", countries)
    scopes = sorted(set(new.scopes) - set(old.scopes))
    if scopes:
        add("scopes", f"scopes added: {', '.join(scopes)}")
    senders = sorted(set(new.senders) - set(old.senders))
    if old.senders and (senders or not new.senders):
        add("senders", f"senders added: {', '.join(senders)}" if new.senders else "dropped: any sender ID")
    rates = _rates_change(old.rate_limits, new.rate_limits)
    if rates:
        add("rate_limits", rates)
    return found


def _countries_change(old: Sequence[str], new: Sequence[str]) -> str:
    """Destinations the new list allows that the old did not (``*`` is every country; calling
    codes such as ``+881`` are named one by one; an empty list allows none)."""
    if "*" in new and "*" not in old:
        return 'widened to "*" (every country)'
    # with "*" before, only a calling code adds anything
    added = [c for c in sorted(set(new) - set(old)) if c.startswith("+") or "*" not in old]
    return f"countries added: {', '.join(added)}" if added else ""


# --------------------------------------------------------------------------- routes


def _route(old: RouteConfig, new: RouteConfig, where: Located) -> list[Weakening]:
    found: list[Weakening] = []

    def add(key: str, message: str) -> None:
        found.append(Weakening(where.file, f"{where.key}.{key}", "route", new.name, message))

    ip = _ip_change(old.ip_allow, new.ip_allow)
    if ip:
        add("ip_allow", ip)
    auth = [kind for kind in new.auth if kind not in old.auth]
    if auth:
        add("auth", f"credential kinds added: {', '.join(auth)}")
    scopes = sorted(set(old.scopes) - set(new.scopes))
    if scopes:
        add("scopes", f"scopes no longer required: {', '.join(scopes)}")
    if old.number_types and (not new.number_types or set(new.number_types) - set(old.number_types)):
        added = sorted(set(new.number_types) - set(old.number_types))
        add(
            "number_types",
            "dropped: any number type" if not new.number_types else f"number types added: {', '.join(added)}",
        )
    for key in ("rate_limits", "recipient_limits"):
        rates = _rates_change(getattr(old, key), getattr(new, key))
        if rates:
            add(key, rates)
    for code, before in old.country_limits.items():
        rates = _rates_change(before, new.country_limits.get(code, ()))
        if rates:
            add(f"country_limits.{code}" if code != "*" else 'country_limits."*"', rates)
    return found


# --------------------------------------------------------------------------- shared comparisons


def _ip_change(old: Sequence[str], new: Sequence[str]) -> str:
    """An allowlist is empty for "any address": dropping it or adding ranges widens it."""
    if not old:
        return ""
    if not new:
        return f"dropped (was {', '.join(old)}): any address"
    added = _added_addresses(old, new)
    return f"widened by {added}" if added else ""


def _added_addresses(old: Iterable[str], new: Iterable[str]) -> str:
    """The entries of ``new`` that reach beyond everything ``old`` covered, as text; empty when none."""
    before = netaddr.IPSet(old)
    return ", ".join(cidr for cidr in new if not netaddr.IPSet([cidr]).issubset(before))


def _rates_change(old: Sequence[str], new: Sequence[str]) -> str:
    """Each old rate needs a rate over the same period, no higher, in the new list."""
    if not old:
        return ""
    if not new:
        return f"removed (was {', '.join(old)})"
    after = _by_period(new)
    changes = []
    for period, (amount, text) in _by_period(old).items():
        now = after.get(period)
        if now is None:
            changes.append(f"{text} removed")
        elif now[0] > amount:
            changes.append(f"{text} raised to {now[1]}")
    return "; ".join(changes)


def _by_period(rates: Sequence[str]) -> Mapping[int, tuple[int, str]]:
    """Period in seconds -> (the lowest amount, its text as written)."""
    out: dict[int, tuple[int, str]] = {}
    for text in rates:
        for item in parse_many(text):
            period = item.get_expiry()
            written = f"{item.amount}/{_period_text(item.multiples, item.GRANULARITY.name)}"
            if period not in out or item.amount < out[period][0]:
                out[period] = (item.amount, written)
    return out


def _period_text(multiples: int, unit: str) -> str:
    return unit if multiples == 1 else f"{multiples} {unit}s"
