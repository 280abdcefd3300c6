"""The example deployment (deploy/): its configs pass ``smsgw check-config``, the compose file and
the Prometheus scrape config hang together, and ``smsgw sandbox`` serves on its own.

These tests check the compose file and the Dockerfile as data: services, mounts, hardening, every
smsgw command line parsed by the real CLI. ``make stack-check`` runs them for real with podman.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.commands.cli import build_parser
from gateway.config import parse_listen
from gateway.server.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SMSGW = [sys.executable, "-m", "gateway"]


def example_env() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "secrets.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificates the compose file's ``certs`` service makes, made the same way."""
    certs = tmp_path_factory.mktemp("certs")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, hosts in (("gateway", ["localhost", "gateway1", "gateway2"]), ("sandbox", ["sandbox"])):
        made = subprocess.run(
            [*SMSGW, "keygen", "cert", *(a for h in hosts for a in ("--host", h)),
             "--cert", str(certs / f"{name}.pem"), "--key", str(certs / f"{name}.key")],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    return certs


@pytest.fixture
def deployed(tmp_path: Path, certificates: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """deploy/ copied, with its certificates, and the environment of secrets.env.example."""
    folder = tmp_path / "deploy"
    shutil.copytree(DEPLOY, folder)
    shutil.copytree(certificates, folder / "certs")
    for name, value in example_env().items():
        monkeypatch.setenv(name, value)
    return folder


def test_keygen_cert_never_overwrites(deployed: Path) -> None:
    again = subprocess.run(
        [*SMSGW, "keygen", "cert", "--cert", str(deployed / "certs" / "gateway.pem"),
         "--key", str(deployed / "certs" / "other.key")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip
    assert again.returncode == 2 and "not overwritten" in again.stderr
    assert oct((deployed / "certs" / "gateway.key").stat().st_mode & 0o777) == "0o600"


def test_deploy_config_passes_check_config(deployed: Path) -> None:
    result = subprocess.run(
        [*SMSGW, "check-config", "-c", str(deployed / "config.toml")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "OK (1 clients, 1 routes" in result.stdout
    # the one warning is the admin listener on the compose network, which the file explains
    warnings = [line for line in result.stderr.splitlines() if line]
    assert len(warnings) == 1 and "admin.listen" in warnings[0], warnings
    config = load_config(deployed / "config.toml")
    s = config.settings
    assert s.server.workers > 1 and s.storage.url.startswith("redis://")
    assert (
        s.alerts.auth_failures and s.alerts.number_prefix and s.alerts.client_volume and s.alerts.new_country
    )


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def cli_ok(command: list[str]) -> None:
    """An ``smsgw ...`` command line of the compose file, parsed by the real CLI."""
    assert command[0] == "smsgw", command
    build_parser().parse_args(command[1:])


def test_compose_file_structure() -> None:
    doc = compose()
    services = doc["services"]
    assert {"redis", "sandbox", "gateway1", "gateway2", "certs", "prometheus"} <= set(services)
    gateways = [services["gateway1"], services["gateway2"]]
    host_ports = set()
    for gateway in gateways:
        cli_ok(gateway["command"])
        assert gateway["command"][1:] == ["serve", "-c", "/etc/smsgw/config.toml"]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in gateway["volumes"]}
        assert mounts["/etc/smsgw/config.toml"] == "./config.toml"
        assert mounts["/etc/smsgw/policies"] == "./policies"
        assert mounts["/etc/smsgw/certs"] == "certs"
        assert "/var/log/smsgw" in mounts  # each replica its own audit files (and chain)
        for source in ("./config.toml", "./policies"):
            assert (DEPLOY / source).exists()
        depends = gateway["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["certs"]["condition"] == "service_completed_successfully"
        assert gateway["stop_signal"] == "SIGTERM"
        grace = int(gateway["stop_grace_period"].rstrip("s"))
        assert grace > load_shutdown_timeout() + 10  # the drain is never cut short
        assert gateway["env_file"] == "secrets.env"
        host_ports |= {published(p)[1] for p in gateway["ports"]}
        assert all(published(p)[2] == 8443 for p in gateway["ports"])  # the admin port is not published
    assert len(host_ports) == 2
    sandbox = services["sandbox"]
    cli_ok(sandbox["command"])
    args = build_parser().parse_args(sandbox["command"][1:])
    assert parse_listen(args.listen)[1] == 8089 and args.cert and args.key
    certs = " ".join(services["certs"]["command"])
    assert certs.count("smsgw keygen cert") == 2
    assert {"certs", "gateway1-logs", "gateway2-logs"} <= set(doc["volumes"])
    # every volume a service names is declared
    named = {
        m.split(":")[0] for s in services.values() for m in s.get("volumes", []) if not m.startswith(".")
    }
    assert named <= set(doc["volumes"])


PORT = re.compile(r"^(?P<ip>[0-9.]+):\$\{(?P<var>[A-Z0-9_]+):-(?P<port>\d+)\}:(?P<target>\d+)$")


def published(mapping: str) -> tuple[str, int, int]:
    """``"127.0.0.1:${VAR:-8443}:8443"`` → (host address, default host port, container port)."""
    match = PORT.match(mapping)
    assert match, f"{mapping!r} is not HOST_IP:${{VAR:-PORT}}:PORT"
    return match["ip"], int(match["port"]), int(match["target"])


def test_published_ports_listen_on_loopback_only() -> None:
    """Every published port is bound to 127.0.0.1, and its host port can be moved by a variable
    (make stack-check picks free ones when the defaults are taken)."""
    services = compose()["services"]
    mappings = [m for s in services.values() for m in s.get("ports", [])]
    assert len(mappings) == 3
    assert {published(m)[0] for m in mappings} == {"127.0.0.1"}
    assert len({PORT.match(m)["var"] for m in mappings}) == 3  # type: ignore[index]


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def image_ids() -> tuple[int, int]:
    """The numeric USER uid:gid of the Dockerfile."""
    (line,) = [line for line in dockerfile().splitlines() if line.startswith("USER ")]
    uid, _, gid = line.split()[1].partition(":")
    assert uid.isdigit() and gid.isdigit(), f"{line}: the user and group must be numeric"
    return int(uid), int(gid)


def test_image_user_is_numeric_and_its_group_exists() -> None:
    """The group of the image's user is created with the same id compose uses (10001:10001): before,
    useradd --system left it at gid 999 and compose named a group that did not exist."""
    uid, gid = image_ids()
    assert uid == gid == 10001
    text = dockerfile()
    assert f"groupadd --system --gid {gid} smsgw" in text
    assert f"useradd --system --uid {uid} --gid {gid}" in text
    # the log folder is 0750 (the gateway warns at every start when the audit log's folder is wider)
    assert re.search(r"install -d -m 0750 -o 10001 -g 10001 [^\n]*/var/log/smsgw", text)
    # the base is an argument whose default stays the official slim image
    assert "ARG BASE=python:3.11-slim" in text and "FROM ${BASE}" in text


def test_smsgw_containers_are_hardened() -> None:
    """Gateways and sandbox: the image's numeric user, read-only root, every capability dropped and
    no new privileges; the certs job is root only to hand its volume over, with CHOWN alone."""
    services = compose()["services"]
    uid, gid = image_ids()
    for name in ("gateway1", "gateway2", "sandbox"):
        service = services[name]
        assert service["user"] == f"{uid}:{gid}", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"] and "cap_add" not in service, name
        assert "no-new-privileges:true" in service["security_opt"], name
    certs = services["certs"]
    assert certs["cap_drop"] == ["ALL"] and certs["cap_add"] == ["CHOWN"]
    assert "no-new-privileges:true" in certs["security_opt"] and certs["read_only"] is True
    assert f"chown -R {uid}:{gid} /certs" in " ".join(certs["command"])


def test_pid_file_is_on_a_tmpfs_the_gateway_user_can_write() -> None:
    """A tmpfs comes up with the mode of the image's folder but root-owned, so a pid file in
    /var/lib/smsgw (0750, 10001) could not be written and ``smsgw reload`` exited 2. The pid file is
    on the /tmp tmpfs (1777 in the image), and no tmpfs needs owner options (Docker's uid=/gid=
    are refused by podman 4, podman's U by Docker)."""
    import tomllib

    pid_file = Path(tomllib.loads((DEPLOY / "config.toml").read_text())["server"]["pid_file"])
    assert pid_file.is_absolute() and pid_file.parts[1] == "tmp"
    for name in ("gateway1", "gateway2"):
        assert compose()["services"][name]["tmpfs"] == ["/tmp"]
    assert "/var/lib/smsgw" not in (DEPLOY / "compose.yaml").read_text()


def test_health_checks_fit_each_service() -> None:
    """The image's HEALTHCHECK asks the gateway's admin port: the sandbox has its own check on its
    port and the one-shot certs job has none (it turned the sandbox unhealthy, so ``up --wait`` failed)."""
    services = compose()["services"]
    assert services["certs"]["healthcheck"] == {"disable": True}
    sandbox = services["sandbox"]
    test = " ".join(sandbox["healthcheck"]["test"])
    port = parse_listen(build_parser().parse_args(sandbox["command"][1:]).listen)[1]
    assert str(port) in test and "9000" not in test
    assert "healthcheck" not in services["gateway1"]  # the image's own /healthz check
    assert "127.0.0.1:9000/healthz" in dockerfile()
    assert services["prometheus"]["healthcheck"]["test"][0] == "CMD"
    for name in ("gateway1", "gateway2"):
        assert services[name]["depends_on"]["sandbox"]["condition"] == "service_healthy"


def test_stack_check_is_wired_into_make_and_ci() -> None:
    """``make image`` and ``make stack-check`` exist, CI runs the stack check after the tests, and the
    deploy policy's per-recipient limit is small enough for the check to reach it in a few sends."""
    import tomllib

    makefile = (ROOT / "Makefile").read_text()
    assert "\nimage:" in makefile and "\nstack-check: image" in makefile
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci.index("make test") < ci.index("make stack-check")
    limits = [
        int(limit.split("/")[0])
        for path in (DEPLOY / "policies").glob("*.toml")
        for route in tomllib.loads(path.read_text()).get("route", [])
        for limit in route.get("recipient_limits", [])
    ]
    assert limits and limits[0] <= 20
    for script in ("image.sh", "stack-check.sh", "lib.sh"):
        text = (DEPLOY / "podman" / script).read_text()
        assert "deb.debian.org" not in text and "http://" not in text  # the mirror is read at run time


def load_shutdown_timeout() -> float:
    import tomllib

    return float(tomllib.loads((DEPLOY / "config.toml").read_text())["server"]["shutdown_timeout_s"])


def test_prometheus_scrapes_every_replica_admin_port() -> None:
    import tomllib

    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    admin_port = parse_listen(tomllib.loads((DEPLOY / "config.toml").read_text())["admin"]["listen"])[1]
    assert targets == {f"gateway1:{admin_port}", f"gateway2:{admin_port}"}
    assert set(compose()["services"]) >= {t.split(":")[0] for t in targets}


def test_secrets_example_names_every_env_reference() -> None:
    """Every ``env:`` reference of the deploy configs has a line in secrets.env.example."""
    import re

    texts = [
        (DEPLOY / "config.toml").read_text(),
        *(p.read_text() for p in (DEPLOY / "policies").glob("*.toml")),
    ]
    referenced = {m for text in texts for m in re.findall(r'"env:([A-Z0-9_]+)"', text)}
    assert referenced == set(example_env())


def stack_check_module() -> Any:
    """deploy/podman/stack_check.py (a script, not a package module), loaded from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stack_check", DEPLOY / "podman" / "stack_check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("stack_check", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_stack_check_secrets_are_fresh_for_every_name() -> None:
    """The stack check writes its own secrets.env: every name of the example, none of its values,
    a log hash key long enough for check-config, and a different set on every run."""
    check = stack_check_module()
    example = example_env()
    first, second = check.secrets_env(), check.secrets_env()
    assert set(first) == set(example)
    assert not set(first.values()) & set(example.values())
    assert first != second
    assert len(first["SMSGW_LOG_HASH_KEY"]) >= 32


def test_stack_check_moves_a_taken_port_and_reads_the_shared_limit() -> None:
    """A default port already taken on 127.0.0.1 is replaced by a free one (another stack or a
    developer's gateway may hold 8443); the limit the check must reach is the deploy policy's."""
    import socket

    check = stack_check_module()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        moved = check.free_port(taken)
    assert moved != taken and moved > 0
    assert check.recipient_limit() == 10
