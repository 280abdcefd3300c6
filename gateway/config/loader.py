"""Read ``config.toml`` and ``policies/*.toml`` into one frozen :class:`Config`.

Every problem is reported as ``FILE: dotted.key: message``, all of them at once, and a config
with any problem is never served. Warnings (``FILE: dotted.key: warning: message``) are things
an operator should fix that do not, on their own, open a hole; they never stop a start.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import ssl
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from gateway.config.files import loose_log_modes, open_to_others
from gateway.config.refs import NOT_A_SECRET, RefError, resolve_tree
from gateway.config.schema import (
    ClientConfig,
    KeyProblem,
    PolicyFile,
    RouteConfig,
    Settings,
    is_loopback_host,
    parse_listen,
)
from gateway.core.routing import overlap_example, route_shape
from gateway.core.seal import seal_key_problem

if TYPE_CHECKING:
    from gateway.messages.fields import FieldTable

ONE_YEAR_S = 31536000


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"

    def as_warning(self) -> str:
        """How ``check-config`` and ``serve`` show a warning."""
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: warning: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: Iterable[Problem], warnings: Iterable[Problem] = ()) -> None:
        self.problems = tuple(problems)
        self.warnings = tuple(warnings)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Located:
    """A policy entry and where it was written, so later errors can name file and key."""

    file: str
    key: str


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    settings: Settings
    clients: tuple[ClientConfig, ...]
    routes: tuple[RouteConfig, ...]
    client_sources: tuple[Located, ...]
    route_sources: tuple[Located, ...]
    #: The selected provider's ``[upstream.<provider>]`` table, validated by its model.
    provider_options: BaseModel | None = None
    warnings: tuple[Problem, ...] = ()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve_path(self, value: str) -> Path:
        """Paths in the config are relative to the config file's directory."""
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or "function-after" in str(part):
            continue  # pydantic's internal validator names
        else:
            name = str(part) or '""'  # TOML allows an empty key; the message must still show where
            out += f".{name}" if out else name
    return out


_MESSAGES = {
    "extra_forbidden": "unknown key (check the spelling against config.example.toml)",
    "missing": "required key is missing",
}


def _problems_from(file: str, exc: ValidationError, prefix: str = "") -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        key = _dotted(err["loc"])
        if prefix:
            key = f"{prefix}.{key}" if key else prefix
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, KeyProblem):
            key = f"{key}.{cause.key}" if key else cause.key
        message = _MESSAGES.get(err["type"], err["msg"])
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        problems.append(Problem(file, key, message))
    return problems


def _read_toml(path: Path, file: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([Problem(file, "", "file does not exist")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(file, "", f"not valid TOML: {exc}")]) from None
    except OSError as exc:
        raise ConfigError([Problem(file, "", f"cannot be read ({exc.strerror})")]) from None
    # A NUL (TOML's "\u0000") is in no valid value, and as a path it made the file checks raise
    # ValueError instead of reporting a problem.
    nul = [Problem(file, key, "must not contain a NUL character") for key in _nul_keys(doc, "")]
    if nul:
        raise ConfigError(nul)
    return doc


def _nul_keys(node: Any, key: str) -> list[str]:
    """Dotted keys of the strings (and key names) that hold a NUL character."""
    if isinstance(node, str):
        return [key] if "\x00" in node else []
    if isinstance(node, list):
        return [k for i, item in enumerate(node) for k in _nul_keys(item, f"{key}[{i}]")]
    if isinstance(node, dict):
        out: list[str] = []
        for name, value in node.items():
            dotted = f"{key}.{name}" if key else name
            out += [dotted.replace("\x00", "\\0")] if "\x00" in name else _nul_keys(value, dotted)
        return out
    return []


def _validate(model: type[BaseModel], data: Any, file: str, problems: list[Problem]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from(file, exc))
        return None


def load_config(path: str | Path) -> Config:
    """Load, resolve and validate; raise :class:`ConfigError` listing every problem."""
    path = Path(path).absolute()
    file = _display(path)
    raw, ref_errors, ref_warnings = resolve_tree(_read_toml(path, file), path.parent)
    problems = _located(file, ref_errors)
    warnings = _located(file, ref_warnings)
    for misplaced in ("client", "route"):
        if misplaced in raw:
            problems.append(Problem(file, misplaced, f"[[{misplaced}]] tables belong in the policy files"))
            raw.pop(misplaced)
    provider_tables = _pop_provider_tables(raw)
    settings: Settings | None = _validate(Settings, raw, file, problems)
    main_problems = list(problems)
    provider_options = (
        _provider_options(settings.upstream.provider, provider_tables, file, problems) if settings else None
    )

    clients: list[ClientConfig] = []
    routes: list[RouteConfig] = []
    client_sources: list[Located] = []
    route_sources: list[Located] = []
    # Policy files are checked even when the main file has problems, so one run shows them all.
    policies_table = raw.get("policies") if isinstance(raw.get("policies"), dict) else {}
    dir_value = settings.policies.dir if settings else policies_table.get("dir", "policies")
    policy_dir = Path(dir_value if isinstance(dir_value, str) else "policies")
    if not policy_dir.is_absolute():
        policy_dir = path.parent / policy_dir
    if not policy_dir.is_dir():
        problems.append(Problem(file, "policies.dir", f"{_display(policy_dir)} is not a directory"))
    else:
        for policy_path in sorted(policy_dir.glob("*.toml")):
            pfile = _display(policy_path)
            try:
                praw, perrors, pwarnings = resolve_tree(_read_toml(policy_path, pfile), policy_path.parent)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            problems.extend(_located(pfile, perrors))
            warnings.extend(_located(pfile, pwarnings))
            policy = _validate(PolicyFile, praw, pfile, problems)
            if policy is None:
                continue
            for i, client in enumerate(policy.client):
                clients.append(client)
                client_sources.append(Located(pfile, f"client[{i}]"))
            for i, route in enumerate(policy.route):
                routes.append(route)
                route_sources.append(Located(pfile, f"route[{i}]"))

    main_file_valid = settings is not None
    if settings is None:
        # The policies' own cross-checks still run, over the main file with its wrong keys left
        # at their defaults, so one run shows every problem; the main file's are shown once it
        # validates (checked against defaults, they could be wrong).
        settings = _with_defaults_for_errors(raw)
        if settings is None:
            raise ConfigError(_without_doubles(problems), warnings)
    config = Config(
        path,
        settings,
        tuple(clients),
        tuple(routes),
        tuple(client_sources),
        tuple(route_sources),
        provider_options,
    )
    problems.extend(_cross_checks(config, file))
    problems.extend(_provider_checks(config, file))
    problems.extend(_route_overlaps(config))
    problems.extend(_webhook_checks(config, file))
    problems.extend(_not_yet_available(config, file))
    problems.extend(_alert_checks(config, file))
    problems.extend(_identity_checks(config, file))
    problems.extend(_limit_checks(config, file))
    problems.extend(_destination_checks(config))
    warnings.extend(_limit_warnings(config, file))
    warnings.extend(_unlimited_clients(config))
    warnings.extend(_warnings(config, file))
    warnings.extend(_identity_warnings(config, file, datetime.now(UTC).date()))
    problems.extend(_path_checks(config, file))
    if not main_file_valid:
        problems = [p for p in problems if p.file != file or p in main_problems]
        warnings = [w for w in warnings if w.file != file]
    if problems:
        raise ConfigError(_without_doubles(problems), warnings)
    return dataclasses.replace(config, warnings=tuple(warnings))


def _with_defaults_for_errors(raw: dict[str, Any], tries: int = 8) -> Settings | None:
    """The main file with every key that fails validation removed (its default then applies);
    None when that does not make it valid."""
    doc = copy.deepcopy(raw)
    for _ in range(tries):
        try:
            return Settings.model_validate(doc)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                _drop(doc, tuple(err["loc"]))
    return None


def _drop(doc: Any, loc: tuple[int | str, ...]) -> None:
    """Remove the key at ``loc`` (a whole list, when the error is inside one)."""
    names: list[str] = []
    for part in loc:
        if not isinstance(part, str):
            break
        names.append(part)
    node = doc
    for name in names[:-1]:
        node = node.get(name) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    if names and isinstance(node, dict):
        node.pop(names[-1], None)


def _path_checks(config: Config, file: str) -> list[Problem]:
    """Files the gateway writes at start: found here, named by their key, not at ``serve``."""
    s = config.settings
    wanted = [("logging.access_log", s.logging.access_log), ("logging.audit_log", s.logging.audit_log)]
    wanted.append(("server.pid_file", s.server.pid_file))
    problems = []
    for key, value in wanted:
        if not value or value == "-":
            continue
        why = _unwritable(config.resolve_path(value))
        if why:
            problems.append(Problem(file, key, why))
    return problems


def _unwritable(path: Path) -> str:
    """Why the gateway could not create or append to ``path``; "" when it can."""
    if path.is_dir():
        return f"{_display(path)} is a directory"
    if path.exists():
        return "" if os.access(path, os.W_OK) else f"{_display(path)} cannot be written"
    folder = path.parent
    while not folder.exists():
        if folder.parent == folder:
            return f"no folder of {_display(path)} exists"
        folder = folder.parent
    if not folder.is_dir():
        return f"{_display(folder)} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{_display(folder)} cannot be written (the gateway creates {_display(path)} there)"
    return ""


def _located(file: str, found: list[RefError]) -> list[Problem]:
    return [Problem(file, e.key, e.message) for e in found]


def _without_doubles(problems: list[Problem]) -> list[Problem]:
    """One problem per mistake: a reference under a misspelt key is reported as the unknown key it
    is; a reference refused elsewhere is not also reported as the invalid value it was left as."""
    unknown = {(p.file, p.key) for p in problems if p.message == _MESSAGES["extra_forbidden"]}

    def under_unknown(p: Problem) -> bool:
        return any(
            p.file == file and (p.key == key or p.key.startswith((f"{key}.", f"{key}[")))
            for file, key in unknown
        )

    kept = [p for p in problems if not (p.message == NOT_A_SECRET and under_unknown(p))]
    refused = {(p.file, p.key) for p in kept if p.message == NOT_A_SECRET}
    return [p for p in kept if p.message == NOT_A_SECRET or (p.file, p.key) not in refused]


def _pop_provider_tables(raw: dict[str, Any]) -> dict[str, Any]:
    """``[upstream.<provider>]`` tables, taken out before the schema sees them: their models belong
    to the providers (the schema knows none)."""
    from gateway.vendors import REGISTRY  # here: provider modules import gateway.config

    upstream = raw.get("upstream")
    if not isinstance(upstream, dict):
        return {}
    return {name: upstream.pop(name) for name in list(upstream) if name in REGISTRY}


def _provider_options(
    provider: str, tables: dict[str, Any], file: str, problems: list[Problem]
) -> BaseModel | None:
    from gateway.vendors import REGISTRY

    entry = REGISTRY.get(provider)
    if entry is None:
        known = ", ".join(sorted(REGISTRY))
        problems.append(Problem(file, "upstream.provider", f"{provider!r} is not one of {known}"))
        return None
    for name in tables:
        if name != provider:
            problems.append(
                Problem(
                    file,
                    f"upstream.{name}",
                    f"applies only with provider = {name!r} (provider is {provider!r})",
                )
            )
    table = tables.get(provider)
    if entry.options is None:
        if table is not None:
            problems.append(Problem(file, f"upstream.{provider}", f"provider {provider!r} takes no options"))
        return None
    if table is None:
        if entry.options_required:
            problems.append(
                Problem(
                    file,
                    f"upstream.{provider}",
                    f"provider = {provider!r} needs an [upstream.{provider}] table",
                )
            )
            return None
        table = {}
    try:
        return entry.options.model_validate(table)
    except ValidationError as exc:
        problems.extend(_problems_from(file, exc, f"upstream.{provider}"))
        return None


def _cross_checks(config: Config, file: str) -> list[Problem]:
    problems: list[Problem] = []
    s = config.settings

    seen_ids: dict[str, Located] = {}
    seen_users: dict[str, Located] = {}
    for client, where in zip(config.clients, config.client_sources, strict=True):
        if client.id in seen_ids:
            first = seen_ids[client.id]
            problems.append(
                Problem(where.file, f"{where.key}.id", f"duplicate client id (first in {first.file})")
            )
        seen_ids.setdefault(client.id, where)
        for j, cred in enumerate(client.basic):
            if cred.username in seen_users:
                problems.append(
                    Problem(
                        where.file, f"{where.key}.basic[{j}].username", "username is used by another client"
                    )
                )
            seen_users.setdefault(cred.username, where)

    seen_routes: set[str] = set()
    seen_shapes: set[tuple[str, str]] = set()
    for route, where in zip(config.routes, config.route_sources, strict=True):
        if route.name in seen_routes:
            problems.append(Problem(where.file, f"{where.key}.name", "duplicate route name"))
        seen_routes.add(route.name)
        for method in route.methods:
            shape = (route_shape(route.path), method)
            if shape in seen_shapes:
                problems.append(
                    Problem(
                        where.file,
                        f"{where.key}.path",
                        f"{method} {route.path} is already served by another route",
                    )
                )
            seen_shapes.add(shape)

    tls = s.server.tls
    if tls.mode == "terminate":
        if not tls.cert_file or not tls.key_file:
            problems.append(
                Problem(file, "server.tls.cert_file", "terminate mode needs cert_file and key_file")
            )
        else:
            missing = [
                (key, value)
                for key, value in (
                    ("server.tls.cert_file", tls.cert_file),
                    ("server.tls.key_file", tls.key_file),
                )
                if not config.resolve_path(value).is_file()
            ]
            problems.extend(Problem(file, key, f"{value} does not exist") for key, value in missing)
            if not missing:
                try:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(config.resolve_path(tls.cert_file), config.resolve_path(tls.key_file))
                except (ssl.SSLError, OSError) as exc:
                    problems.append(
                        Problem(
                            file,
                            "server.tls.key_file",
                            f"certificate and key do not load as a pair ({type(exc).__name__})",
                        )
                    )
    elif not s.server.trusted_proxies:
        problems.append(
            Problem(
                file,
                "server.trusted_proxies",
                "offloaded TLS needs the load balancer's addresses here; no request can count as HTTPS",
            )
        )
    for key, value in (
        ("server.tls.client_ca_file", tls.client_ca_file),
        ("upstream.ca_file", s.upstream.ca_file),
    ):
        if value and not config.resolve_path(value).is_file():
            problems.append(Problem(file, key, f"{value} does not exist"))
    if s.server.http.listen and _same_socket(s.server.http.listen, s.server.listen):
        problems.append(Problem(file, "server.http.listen", "must differ from server.listen"))
    if _same_socket(s.admin.listen, s.server.listen):
        problems.append(Problem(file, "admin.listen", "must differ from server.listen"))
    if s.logging.body == "seal" and s.logging.seal_public_key_file:
        seal_problem = seal_key_problem(config.resolve_path(s.logging.seal_public_key_file))
        if seal_problem:
            problems.append(Problem(file, "logging.seal_public_key_file", seal_problem))
    return problems


def _webhook_checks(config: Config, file: str) -> list[Problem]:
    from gateway.vendors.webhooks import check_routes  # here: vendor modules import gateway.config

    return [Problem(*found) for found in check_routes(config, file)]


def _provider_checks(config: Config, file: str) -> list[Problem]:
    """Routes the provider cannot read, and credentials the provider cannot use."""
    from gateway.vendors import REGISTRY, ProviderSettings

    s = config.settings
    entry = REGISTRY.get(s.upstream.provider)
    if entry is None or (
        entry.options is not None and config.provider_options is None and entry.options_required
    ):
        return []  # already reported
    problems: list[Problem] = []
    adapter = entry.build(ProviderSettings(config.provider_options, s.upstream.account_id))
    for route, where in zip(config.routes, config.route_sources, strict=True):
        if route.kind == "webhook":
            continue
        try:
            reader = adapter.reader(route)
        except ValueError as exc:
            problems.append(Problem(where.file, f"{where.key}.path", str(exc)))
            continue
        problems.extend(_field_checks(config, route, getattr(reader, "table", None), where))
    kind = s.upstream.credentials.type
    if s.upstream.provider == "aws-sns" and kind != "aws-sigv4":
        problems.append(
            Problem(file, "upstream.credentials.type", "provider 'aws-sns' needs type = \"aws-sigv4\"")
        )
    if kind == "aws-sigv4" and importlib.util.find_spec("botocore") is None:
        problems.append(
            Problem(
                file,
                "upstream.credentials.type",
                "'aws-sigv4' needs botocore: install smsgw with the aws extra (pip install 'smsgw[aws]')",
            )
        )
    if s.upstream.provider == "messente" and kind != "basic":
        legacy = any(r.path.rstrip("/").endswith("/send_sms") for r in config.routes)
        if legacy:
            problems.append(
                Problem(
                    file,
                    "upstream.credentials.type",
                    "Messente's send_sms takes the account's username and password: use type = \"basic\"",
                )
            )
    return problems


def _field_checks(
    config: Config, route: RouteConfig, table: FieldTable | None, where: Located
) -> list[Problem]:
    """``allow_fields`` must name control or callback fields the route's reader declares; a
    callback field needs ``server.public_url`` and a webhook route for the vendor to call."""
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


def _route_overlaps(config: Config) -> list[Problem]:
    """Two routes that share a method and some path: the first one listed would silently win.

    Routes of the same shape are reported by the shape check in ``_cross_checks``.
    """
    problems: list[Problem] = []
    entries = list(zip(config.routes, config.route_sources, strict=True))
    for j, (later, where) in enumerate(entries):
        for earlier, first in entries[:j]:
            methods = [m for m in later.methods if m in earlier.methods]
            if not methods or route_shape(later.path) == route_shape(earlier.path):
                continue
            example = overlap_example(earlier.path, later.path)
            if example is None:
                continue
            problems.append(
                Problem(
                    where.file,
                    f"{where.key}.path",
                    f"{'/'.join(methods)} {later.path} overlaps {earlier.path} of "
                    f"{first.file}: {first.key}.path (both match {example}); "
                    "the route listed first would win, so make the paths distinct",
                )
            )
    return problems


def _warnings(config: Config, file: str) -> list[Problem]:
    s = config.settings
    warnings: list[Problem] = []
    if s.hsts.max_age_s < ONE_YEAR_S:
        warnings.append(
            Problem(
                file,
                "hsts.max_age_s",
                f"{s.hsts.max_age_s} is under one year ({ONE_YEAR_S}): browsers forget sooner "
                "that this host is HTTPS only",
            )
        )
    host, _ = parse_listen(s.admin.listen)
    if not is_loopback_host(host):
        warnings.append(
            Problem(
                file,
                "admin.listen",
                f"{s.admin.listen} is not a loopback address: health and readiness answer "
                "the network; use 127.0.0.1 unless a firewall keeps this port private",
            )
        )
    tls = s.server.tls
    if tls.mode == "terminate" and tls.key_file:
        key_path = config.resolve_path(tls.key_file)
        mode = open_to_others(key_path)
        if mode is not None:
            warnings.append(
                Problem(
                    file,
                    "server.tls.key_file",
                    f"file {key_path} is open to group or others (mode {mode:04o}); chmod 600 it",
                )
            )
    warnings.extend(
        Problem(file, loose.key, loose.warning()) for loose in loose_log_modes(s.logging, config.base_dir)
    )
    return warnings


def _same_socket(a: str, b: str) -> bool:
    """Port 0 asks the OS for a free port, so two such listeners never collide."""
    return a == b and parse_listen(a)[1] != 0


def _not_yet_available(config: Config, file: str) -> list[Problem]:
    """Keys of the contract that this version cannot enforce yet.

    Refusing them is deliberate: a security gateway that silently ignores a configured limit or
    authentication method would look protected while it is not.
    """
    return []


def _tracing_checks(config: Config, file: str) -> list[Problem]:
    """``[tracing]`` on needs the optional OpenTelemetry packages."""
    if not config.settings.tracing.enabled:
        return []
    if (
        importlib.util.find_spec("opentelemetry") is None
        or importlib.util.find_spec("opentelemetry.sdk") is None
    ):
        return [Problem(file, "tracing.enabled", "needs OpenTelemetry: pip install 'smsgw[otel]'")]
    return []


def _alert_checks(config: Config, file: str) -> list[Problem]:
    """``[alerts]``: where alerts go, and rules that could not count as written
    (gateway/alerts/anomalies.py)."""
    from gateway.callbacks.config import forward_to_problem

    alerts = config.settings.alerts
    problems: list[Problem] = []
    hook = alerts.webhook
    if hook is not None:
        problem = forward_to_problem(hook.url)
        if problem:
            problems.append(Problem(file, "alerts.webhook.url", problem.split(": callbacks carry")[0]))
        if hook.ca_file:
            if urlsplit(hook.url).scheme != "https":
                problems.append(Problem(file, "alerts.webhook.ca_file", "applies only to an https:// url"))
            elif not config.resolve_path(hook.ca_file).is_file():
                problems.append(Problem(file, "alerts.webhook.ca_file", f"{hook.ca_file} does not exist"))
    no_key = not (config.settings.logging.hash_key and config.settings.logging.hash_key.get_secret_value())
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


#: ``check-config`` warns about an HMAC key older than this, or expiring within ``KEY_EXPIRY_WARN``.
KEY_MAX_AGE = timedelta(days=90)
KEY_EXPIRY_WARN = timedelta(days=14)


def _identity_checks(config: Config, file: str) -> list[Problem]:
    """Credentials that could not work, or would name two clients at once (gateway/identity)."""
    from gateway.identity.keys import PublicKeyError, load_public_key

    s = config.settings
    tls = s.server.tls
    problems: list[Problem] = []
    issuers = {issuer.issuer for issuer in s.auth.jwt.issuers}
    for i, issuer in enumerate(s.auth.jwt.issuers):
        where = f"auth.jwt.issuers[{i}]"
        for key in ("public_key_file", "jwks_ca_file"):
            value = getattr(issuer, key)
            if value and not config.resolve_path(value).is_file():
                problems.append(Problem(file, f"{where}.{key}", f"{value} does not exist"))
            elif key == "public_key_file" and value:
                try:
                    load_public_key(config.resolve_path(value).read_bytes(), issuer.algorithms)
                except (OSError, PublicKeyError) as exc:
                    problems.append(Problem(file, f"{where}.{key}", str(exc)))

    key_ids: dict[str, Located] = {}
    subjects: dict[tuple[str, str], Located] = {}
    tls_subjects: dict[str, Located] = {}
    for client, where in zip(config.clients, config.client_sources, strict=True):
        for j, key in enumerate(client.hmac_keys):
            first = key_ids.setdefault(key.id, where)
            if first is not where:
                problems.append(
                    Problem(
                        where.file,
                        f"{where.key}.hmac_keys[{j}].id",
                        f"key id {key.id!r} is already used (first in {first.file}: {first.key})",
                    )
                )
        if client.jwt_issuer and client.jwt_issuer not in issuers:
            problems.append(
                Problem(where.file, f"{where.key}.jwt_issuer", "names no issuer in [[auth.jwt.issuers]]")
            )
        if client.jwt_subject:
            for issuer in [client.jwt_issuer] if client.jwt_issuer else sorted(issuers) or [""]:
                first = subjects.setdefault((issuer, client.jwt_subject), where)
                if first is not where:
                    problems.append(
                        Problem(
                            where.file,
                            f"{where.key}.jwt_subject",
                            f"another client has this jwt_subject (first in {first.file}: {first.key})",
                        )
                    )
                    break
        if client.tls_subject:
            if tls.mode != "terminate" or not tls.client_ca_file:
                problems.append(
                    Problem(
                        where.file,
                        f"{where.key}.tls_subject",
                        "needs server.tls.client_ca_file (mutual TLS, terminate mode)",
                    )
                )
            first = tls_subjects.setdefault(client.tls_subject.lower(), where)
            if first is not where:
                problems.append(
                    Problem(
                        where.file,
                        f"{where.key}.tls_subject",
                        f"another client has this tls_subject (first in {first.file}: {first.key})",
                    )
                )

    for route, where in zip(config.routes, config.route_sources, strict=True):
        if "jwt" in route.auth and not issuers:
            problems.append(
                Problem(where.file, f"{where.key}.auth", f"'jwt' needs [[auth.jwt.issuers]] in {file}")
            )
        if "mtls" in route.auth and (tls.mode != "terminate" or not tls.client_ca_file):
            problems.append(
                Problem(
                    where.file,
                    f"{where.key}.auth",
                    "'mtls' needs server.tls.client_ca_file and tls.mode = 'terminate' "
                    "(behind offloaded TLS the gateway never sees the client certificate)",
                )
            )
    return problems


def _limit_checks(config: Config, file: str) -> list[Problem]:
    """Limits that could not hold as written (gateway/limits/stage.py, gateway/limits/otp.py)."""
    s = config.settings
    problems: list[Problem] = []
    if s.server.workers > 1 and s.storage.url.startswith("memory://"):
        problems.append(
            Problem(
                file,
                "server.workers",
                "more than one worker needs Redis storage (storage.url): with memory:// each process "
                "would keep its own counters, so no limit, OTP cap or idempotency key would hold",
            )
        )
    no_key = not (s.logging.hash_key and s.logging.hash_key.get_secret_value())
    why = "needs logging.hash_key: storage keys numbers by an HMAC, never in clear text"
    for route, where in zip(config.routes, config.route_sources, strict=True):
        if route.kind == "webhook":
            continue
        otp_capped = route.kind in ("otp", "otp-check") or route.otp is not None
        if no_key and route.recipient_limits:
            problems.append(Problem(where.file, f"{where.key}.recipient_limits", f"recipient_limits {why}"))
        if no_key and otp_capped:
            key = f"{where.key}.otp" if route.otp is not None else f"{where.key}.kind"
            problems.append(Problem(where.file, key, f"OTP caps {why}"))
        if route.otp is not None and route.kind == "sms" and not route.otp.detect:
            problems.append(
                Problem(
                    where.file,
                    f"{where.key}.otp.detect",
                    "an sms route's [route.otp] needs detect (the regex that marks a message as an OTP); "
                    "without it the caps would never apply",
                )
            )
        if route.otp is not None and route.kind != "sms" and route.otp.detect:
            problems.append(
                Problem(
                    where.file,
                    f"{where.key}.otp.detect",
                    f"detect applies to kind = 'sms' routes only; every {route.kind!r} request is capped",
                )
            )
    return problems


def _identity_warnings(config: Config, file: str, today: date) -> list[Problem]:
    """Keys due for rotation, and JWT subjects any configured issuer could claim."""
    warnings: list[Problem] = []
    several_issuers = len(config.settings.auth.jwt.issuers) > 1
    for client, where in zip(config.clients, config.client_sources, strict=True):
        for j, key in enumerate(client.hmac_keys):
            at = f"{where.key}.hmac_keys[{j}]"
            if key.expires is not None and key.expires <= today:
                warnings.append(
                    Problem(where.file, f"{at}.expires", f"key {key.id!r} has expired (refused): remove it")
                )
            elif key.expires is not None and key.expires - today <= KEY_EXPIRY_WARN:
                warnings.append(
                    Problem(
                        where.file,
                        f"{at}.expires",
                        f"key {key.id!r} expires on {key.expires}: add its successor and hand it out",
                    )
                )
            if key.created is not None and today - key.created > KEY_MAX_AGE:
                warnings.append(
                    Problem(
                        where.file,
                        f"{at}.created",
                        f"key {key.id!r} is {(today - key.created).days} days old "
                        f"(over {KEY_MAX_AGE.days}): rotate it",
                    )
                )
            if key.created is None and key.expires is None:
                warnings.append(
                    Problem(
                        where.file,
                        at,
                        f"key {key.id!r} has neither created nor expires: its age cannot be checked "
                        "and it never expires",
                    )
                )
        if several_issuers and client.jwt_subject and not client.jwt_issuer:
            warnings.append(
                Problem(
                    where.file,
                    f"{where.key}.jwt_issuer",
                    "several issuers are configured: any of them can name this client; set jwt_issuer",
                )
            )
    return warnings


def _limit_warnings(config: Config, file: str) -> list[Problem]:
    s = config.settings
    no_key = not (s.logging.hash_key and s.logging.hash_key.get_secret_value())
    if no_key and any(route.kind != "webhook" for route in config.routes):
        return [
            Problem(
                file,
                "logging.hash_key",
                "not set: requests with an Idempotency-Key are refused (400), because stored answers "
                "are sealed with a key derived from it",
            )
        ]
    return []


#: Route kinds whose requests carry recipients checked against the client's ``countries``.
SEND_KINDS = frozenset({"sms", "otp", "otp-check"})


def send_routes(config: Config, client: ClientConfig) -> list[RouteConfig]:
    """The send routes a client may use: its scopes cover the route's. Credentials and addresses
    are not weighed: a client that could be given one later is counted, so the checks fail closed."""
    scopes = set(client.scopes)
    return [r for r in config.routes if r.kind in SEND_KINDS and set(r.scopes) <= scopes]


def _destination_checks(config: Config) -> list[Problem]:
    """A client that may send needs ``countries``: a gateway against SMS pumping must not ship open."""
    problems: list[Problem] = []
    for client, where in zip(config.clients, config.client_sources, strict=True):
        routes = send_routes(config, client)
        if client.countries or not routes:
            continue
        problems.append(
            Problem(
                where.file,
                f"{where.key}.countries",
                f"client {client.id!r} may send (route {routes[0].name!r}) but names no countries, so "
                'every destination would be refused: list them (countries = ["EE", "LV"]) or allow '
                'every country in as many words (countries = ["*"])',
            )
        )
    return problems


def _unlimited_clients(config: Config) -> list[Problem]:
    """A client that can reach a send route through which no rate limit counts its requests."""
    warnings: list[Problem] = []
    for client, where in zip(config.clients, config.client_sources, strict=True):
        if client.rate_limits:
            continue
        open_routes = [
            r.name
            for r in send_routes(config, client)
            if not (r.rate_limits or r.recipient_limits or r.country_limits)
        ]
        if open_routes:
            warnings.append(
                Problem(
                    where.file,
                    f"{where.key}.rate_limits",
                    f"client {client.id!r} has no rate limit on route {open_routes[0]!r} (neither the "
                    "client's rate_limits nor the route's rate_limits, recipient_limits or "
                    'country_limits): set rate_limits = ["600/minute"] or similar',
                )
            )
    return warnings
