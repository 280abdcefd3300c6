"""``smsgw check-config`` reports every problem at once (a schema error in the main file no longer
hides the policies' problems), and finds the files the gateway writes at start that it could not
(where ``serve`` used to fail with a misleading "cannot listen")."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.server.config import ConfigError, load_config
from tests.conftest import DEFAULT_POLICY, write_config

SMSGW = [sys.executable, "-m", "gateway"]


def broken_policy() -> dict[str, Any]:
    """A schema problem in one policy file, and one only a cross-check finds in another."""
    clients = {"client": copy.deepcopy(DEFAULT_POLICY["client"])}
    clients["client"][0]["countries"] = ["EE"]
    clients["client"][0]["ip_allow"] = ["10.0.0.0/33"]  # not a CIDR
    route = DEFAULT_POLICY["route"][0]
    routes = {"route": [route, {**route, "name": "twilio-send-again"}]}  # the same path twice
    return {"clients": clients, "routes": routes}


def test_one_run_shows_the_main_files_and_the_policies_problems(tmp_path: Path, pki: dict[str, Path]) -> None:
    settings = {
        "server": {"colour": "blue", "tls": {"min_version": "1.1"}},
        "hsts": {"max_age_s": -5},
    }
    path = write_config(tmp_path, pki, "https://127.0.0.1:9", settings, broken_policy())
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    keys = sorted(p.key for p in caught.value.problems)
    main = [k for k in keys if k.startswith(("server", "hsts"))]
    policy = [p for p in caught.value.problems if p.file.endswith(("clients.toml", "routes.toml"))]
    assert main == ["hsts.max_age_s", "server.colour", "server.tls.min_version"], keys
    assert {p.key for p in policy} >= {"client[0].ip_allow[0]"}, keys
    assert any(p.file.endswith("routes.toml") for p in policy), keys  # a cross-check ran
    done = subprocess.run(
        [*SMSGW, "check-config", "-c", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert f"{len(caught.value.problems)} problem(s)" in done.stderr


def test_a_log_path_that_cannot_be_written_is_named_by_check_config_and_serve(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    (tmp_path / "logs-file").write_text("a file, not a folder\n")
    settings = {"logging": {"audit_log": "logs-file/audit.jsonl"}}
    path = write_config(tmp_path, pki, "https://127.0.0.1:9", settings)
    checked = subprocess.run(
        [*SMSGW, "check-config", "-c", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert checked.returncode == 2
    assert "logging.audit_log" in checked.stderr and "is not a folder" in checked.stderr
    served = subprocess.run(
        [*SMSGW, "serve", "-c", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert served.returncode == 2
    assert "logging.audit_log" in served.stderr and "cannot listen" not in served.stderr


def test_a_read_only_filesystem_is_found(tmp_path: Path, pki: dict[str, Path]) -> None:
    """As root, file modes do not stop a write: a read-only mount does, and check-config sees it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], check=False,
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("no read-only mount here (needs root and mount rights); the file case covers the check")
    try:
        settings = {"logging": {"audit_log": "ro/audit.jsonl"}}
        path = write_config(tmp_path / "gw", pki, "https://127.0.0.1:9", settings)
        (tmp_path / "gw" / "ro").symlink_to(folder)
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert [p.key for p in caught.value.problems] == ["logging.audit_log"]
        assert "cannot be written" in caught.value.problems[0].message
    finally:
        subprocess.run(["umount", str(folder)], check=False)
