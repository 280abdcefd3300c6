"""The example deployment (deploy/): its configs pass ``smsgw check-config``, the compose file and
the Prometheus scrape config hang together, and ``smsgw sandbox`` serves on its own.

Docker cannot run where these tests run, so the compose file is checked as data: its services,
what they mount, and that every smsgw command line in it parses with the real CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser
from gateway.config import load_config, parse_listen

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
        host_ports |= {p.split(":")[0] for p in gateway["ports"]}
        assert all(p.endswith(":8443") for p in gateway["ports"])  # the admin port is not published
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
