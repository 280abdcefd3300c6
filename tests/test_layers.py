"""The layers hold: every import in gateway/ runs down the house plan (README.md, "Layout").

Layers, bottom to top: core, config, storage, the features (in their own order), vendors,
server, commands. A module may import its own layer or a lower one, and a feature only itself or
an earlier feature. Every import counts: at module level, under ``if TYPE_CHECKING:`` and inside
functions, since each is a dependency someone reading or moving the module has to carry. Imports
must not form a loop either. There are no exceptions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Layers by their package under gateway/, bottom first.
LAYERS: tuple[str, ...] = ("core", "config", "storage", "features", "vendors", "server", "commands")
#: Feature packages in their order: a feature may import only itself and those before it.
FEATURES: tuple[str, ...] = (
    "messages",
    "identity",
    "recipients",
    "audit",
    "tracing",
    "transport",
    "callbacks",
    "limits",
    "idempotency",
    "alerts",
)
#: Modules that sit in a layer other than their package says: ``python -m gateway`` runs the CLI.
PLACED: Mapping[str, str] = {"gateway": "core", "gateway.__main__": "commands"}


def gateway_sources() -> dict[str, str]:
    """Every module under gateway/, by dotted name (a package by its own name), with its source."""
    sources: dict[str, str] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        sources[name] = path.read_text(encoding="utf-8")
    return sources


def _is_package(name: str, modules: Mapping[str, str]) -> bool:
    return any(other.startswith(name + ".") for other in modules)


def imported_modules(name: str, source: str, modules: Mapping[str, str]) -> Iterator[tuple[str, int]]:
    """The gateway modules ``name`` imports, anywhere in its source, with the line of each import.

    ``from package import name`` counts as importing the submodule when there is one, else the
    package; relative imports are resolved against ``name``'s package.
    """
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            if target in modules and target != name:
                yield target, node.lineno


def place(module: str) -> tuple[int, int]:
    """(layer, feature position) of a module; the position is 0 outside the features."""
    if module in PLACED:
        return LAYERS.index(PLACED[module]), 0
    package = module.split(".")[1]
    if package in FEATURES:
        return LAYERS.index("features"), FEATURES.index(package)
    if package not in LAYERS:
        raise AssertionError(f"{module}: package {package!r} is in no layer; add it to tests/test_layers.py")
    return LAYERS.index(package), 0


def upward_imports(sources: Mapping[str, str]) -> dict[str, str]:
    """``"module -> imported"`` for every import that runs up a layer or to a later feature,
    mapped to where it is (``gateway/x/y.py:12``)."""
    found: dict[str, str] = {}
    for name, source in sources.items():
        layer, feature = place(name)
        for target, line in imported_modules(name, source, sources):
            t_layer, t_feature = place(target)
            if t_layer > layer or (t_layer == layer == LAYERS.index("features") and t_feature > feature):
                found[f"{name} -> {target}"] = f"{name.replace('.', '/')}.py:{line}"
    return found


def import_loops(sources: Mapping[str, str]) -> set[tuple[str, ...]]:
    """Every set of modules that import one another in a circle (Tarjan's strongly connected
    components of more than one module, or a module importing itself)."""
    graph = {
        name: sorted({t for t, _ in imported_modules(name, src, sources)}) for name, src in sources.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:  # recursive: the import graph is shallow
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                loops.add(tuple(sorted(members)))

    for name in graph:
        if name not in index:
            visit(name)
    return loops


# ============================================================================================
# the rule on gateway/
# ============================================================================================


def test_every_import_runs_down_the_layers() -> None:
    upward = upward_imports(gateway_sources())
    assert not upward, "imports that run up the layers (README.md, Layout):\n" + "\n".join(
        f"  {where}: {arrow}" for arrow, where in sorted(upward.items())
    )


def test_no_import_loop() -> None:
    loops = import_loops(gateway_sources())
    assert not loops, f"import loops: {sorted(loops)}"


def test_every_package_has_a_layer() -> None:
    for name in gateway_sources():
        place(name)  # raises for a package in no layer


# ============================================================================================
# the checks catch what they are for
# ============================================================================================

FAKE = {
    "gateway.core.exchange": "",
    "gateway.server.policy": "",
    "gateway.limits.stage": "",
    "gateway.identity.auth": "",
}


@pytest.mark.parametrize(
    ("source", "arrow"),
    [
        pytest.param(
            "from gateway.server.policy import Build\n",
            "gateway.core.fake -> gateway.server.policy",
            id="module-level",
        ),
        pytest.param(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.server import policy\n",
            "gateway.core.fake -> gateway.server.policy",
            id="type-only",
        ),
        pytest.param(
            "def f():\n    import gateway.limits.stage\n",
            "gateway.core.fake -> gateway.limits.stage",
            id="in-function",
        ),
    ],
)
def test_an_upward_import_is_named(source: str, arrow: str) -> None:
    upward = upward_imports({**FAKE, "gateway.core.fake": source})
    assert upward == {arrow: f"gateway/core/fake.py:{source.count(chr(10))}"}


def test_a_later_feature_is_upward_and_an_earlier_one_is_not() -> None:
    sources = {
        **FAKE,
        "gateway.identity.fake": "from gateway.limits.stage import Limits\n",
        "gateway.limits.fake": "from ..identity.auth import Principal\n",  # relative, and earlier
    }
    assert set(upward_imports(sources)) == {"gateway.identity.fake -> gateway.limits.stage"}


def test_a_loop_is_found() -> None:
    sources = {
        "gateway.core.a": "from gateway.core import b\n",
        "gateway.core.b": "def f():\n    import gateway.core.c\n",
        "gateway.core.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
        "gateway.core.d": "import gateway.core.a\n",
    }
    assert import_loops(sources) == {("gateway.core.a", "gateway.core.b", "gateway.core.c")}
