"""The config layer stays low: ``gateway/config/`` imports only ``gateway/core`` (the checks that need
a feature or a vendor are handed to its loader), and ``gateway.server.config.load_config`` hands
over every check, so ``check-config``, ``serve`` and ``reload`` refuse what the whole list refuses."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.loader import CONFIG_PROBLEMS, CONFIG_WARNINGS, load_checked
from gateway.server.config import CHECKS, ConfigError, load_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "gateway" / "config"


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at the top, in a function or for type checking only."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path", sorted(CONFIG_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(CONFIG_DIR))
)
def test_the_config_layer_imports_only_core_and_itself(path: Path) -> None:
    upward = sorted(
        name
        for name in _imported(path)
        if name.startswith("gateway.") and not name.startswith(("gateway.core", "gateway.config"))
    )
    assert upward == [], f"{path.name} imports {upward}: hand the check to the loader instead"


@pytest.mark.parametrize(
    "path", sorted(CONFIG_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(CONFIG_DIR))
)
def test_config_modules_and_functions_stay_small(path: Path) -> None:
    text = path.read_text()
    assert text.count("\n") <= 500
    long = [
        node.name
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


def test_loading_the_config_layer_loads_no_feature_and_no_vendor() -> None:
    code = (
        "import sys, gateway.config.loader, gateway.config.weakening\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('gateway.')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "['config', 'core']"


def test_the_gateway_runs_every_check_that_needs_only_the_config() -> None:
    assert set(CONFIG_PROBLEMS) <= set(CHECKS.problems)
    assert CHECKS.warnings == CONFIG_WARNINGS
    assert CHECKS.providers is not None


def test_the_config_layer_alone_knows_no_provider_table(tmp_path: Path) -> None:
    """Without the vendors' checks, ``[upstream.generic]`` is an unknown key; the gateway's
    loader reads it with the generic provider's model."""
    (tmp_path / "policies").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        '[server.tls]\nmode = "offloaded"\n[server]\ntrusted_proxies = ["10.0.0.0/8"]\npid_file = ""\n'
        '[logging]\naudit_log = "audit.jsonl"\nbody = "drop"\nrecipient = "drop"\n'
        '[upstream]\nprovider = "generic"\n[upstream.generic]\nformat = "nonsense"\n'
    )
    with pytest.raises(ConfigError) as low:
        load_checked(config)
    assert [(p.key, p.message.split(" (")[0]) for p in low.value.problems] == [
        ("upstream.generic", "unknown key")
    ]
    with pytest.raises(ConfigError) as whole:
        load_config(config)
    assert all(p.key.startswith("upstream.generic.") for p in whole.value.problems), whole.value.problems
