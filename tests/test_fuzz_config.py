"""Property tests over the config loader (gateway/config/loader.py): a valid config and policy,
then random edits of their tables (a key dropped, a value of another type, an unknown key, an
array entry doubled) and random edits of the TOML text itself.

Properties: ``load_config`` returns a config or raises ``ConfigError`` — never any other
exception — and every problem names its file; every problem in a file that parsed as TOML names
the dotted key too (a TOML syntax error has no key: its message gives the line).
"""

from __future__ import annotations

import copy
import datetime
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.server.config import ConfigError, load_config
from tests.conftest import write_config
from tests.fuzzing import examples

VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "env:NOPE", "file:nope", "file:secrets/hash_key", "0.0.0.0:0", "1/minute", "*",
                     "https://x", "127.0.0.1:1", "memory://", "redis://127.0.0.1:1/0", "twilio", "generic",
                     "1 minute", "0 seconds", "0.0.0.0/0", "::/0", "EE", "basic", "jwt", "hmac", "mtls",
                     "webhook", "otp", "sms", "otp-check", "/{a}/{b}", "/x/{a}", "../x", "\x00", "\ud7ff"]),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(min_value=datetime.date(1, 1, 1)),
    st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)  # fmt: skip


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key (and array index) in a TOML document, as a path from the top."""
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.append((*here, key))
        out += _paths(value, (*here, key))
    return out


@st.composite
def edited_doc(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = draw(st.sampled_from(["drop", "value", "unknown", "double"]))
        if op == "drop":
            del parent[last]
        elif op == "value":
            parent[last] = draw(VALUES)
        elif op == "unknown" and isinstance(parent[last], dict):
            parent[last][draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
        elif op == "double" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return doc


@st.composite
def edited_text(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        end = draw(st.integers(at, min(len(text), at + 10)))
        text = text[:at] + draw(st.sampled_from(['"', "'", "[", "]", "=", "\n", "#", "[[route]]", "\\", ""])
                                | st.text(max_size=4)) + text[end:]  # fmt: skip
    return text


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> tuple[Path, dict, dict]:
    folder = tmp_path_factory.mktemp("fuzzconfig")
    path = write_config(folder, pki, "https://127.0.0.1:9")
    load_config(path)  # the starting point is valid
    config = tomllib.loads(path.read_text())
    policy = tomllib.loads((folder / "policies" / "default.toml").read_text())
    return path, config, policy


def check(path: Path) -> None:
    folder = path.parent
    files = {"config.toml", "policies/default.toml"}
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems + exc.warnings:
            shown = problem.file.replace(str(folder) + "/", "")
            assert any(shown.endswith(f) for f in files), problem
            unkeyed = problem.message.startswith(("not valid TOML", "file does not exist", "cannot be read"))
            if not unkeyed:
                assert problem.key, problem  # a problem in a parsed file says where


@settings(max_examples=examples(200))
@given(data=st.data())
def test_edited_tables_load_or_name_file_and_key(base: tuple[Path, dict, dict], data: st.DataObject) -> None:
    path, config, policy = base
    which = data.draw(st.sampled_from(["config", "policy", "both"]), label="which")
    new_config = data.draw(edited_doc(config), label="config") if which != "policy" else config
    new_policy = data.draw(edited_doc(policy), label="policy") if which != "config" else policy
    try:
        config_text, policy_text = tomli_w.dumps(new_config), tomli_w.dumps(new_policy)
    except (TypeError, ValueError):
        return  # not representable in TOML (tomli_w refuses), so no file could say it
    path.write_text(config_text)
    (path.parent / "policies" / "default.toml").write_text(policy_text)
    check(path)


@settings(max_examples=examples(150))
@given(data=st.data())
def test_edited_toml_text_loads_or_names_the_file(base: tuple[Path, dict, dict], data: st.DataObject) -> None:
    path, config, policy = base
    config_text, policy_text = tomli_w.dumps(config), tomli_w.dumps(policy)
    if data.draw(st.booleans(), label="edit config"):
        config_text = data.draw(edited_text(config_text), label="config")
    else:
        policy_text = data.draw(edited_text(policy_text), label="policy")
    path.write_bytes(config_text.encode("utf-8", "surrogatepass"))
    (path.parent / "policies" / "default.toml").write_bytes(policy_text.encode("utf-8", "surrogatepass"))
    check(path)


@pytest.mark.parametrize(
    ("where", "key", "shown"),
    [
        ("config", ("logging", "access_log"), "logging.access_log"),
        ("config", ("server", "tls", "cert_file"), "server.tls.cert_file"),
        ("policy", ("route", 0, "path"), "route[0].path"),
    ],
)
def test_a_nul_in_a_value_is_a_problem_not_a_crash(
    base: tuple[Path, dict, dict], where: str, key: tuple[str | int, ...], shown: str
) -> None:
    """Found by the properties above: a NUL in a path made the file-mode checks raise ValueError."""
    path, config, policy = base
    doc = copy.deepcopy(config if where == "config" else policy)
    node: Any = doc
    for step in key[:-1]:
        node = node[step]
    node[key[-1]] = "x\x00.pem"
    path.write_text(tomli_w.dumps(doc if where == "config" else config))
    (path.parent / "policies" / "default.toml").write_text(
        tomli_w.dumps(doc if where == "policy" else policy)
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [(p.key, p.message) for p in info.value.problems] == [(shown, "must not contain a NUL character")]
    assert info.value.problems[0].file.endswith("config.toml" if where == "config" else "default.toml")


def test_an_empty_key_is_named(base: tuple[Path, dict, dict]) -> None:
    """Found by the properties above: ``[""]`` (an empty TOML key) was reported with no key at all."""
    path, config, policy = base
    path.write_text(tomli_w.dumps(config) + '\n[""]\nx = 1\n')
    (path.parent / "policies" / "default.toml").write_text(tomli_w.dumps(policy))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [(p.key, p.message.split(" (")[0]) for p in info.value.problems] == [('""', "unknown key")]
