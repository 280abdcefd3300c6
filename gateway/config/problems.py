"""Problems as ``FILE: dotted.key: message``: what every config check reports, and how.

Every problem is reported all at once, and a config with any problem is never served. Warnings
(``FILE: dotted.key: warning: message``) are things an operator should fix that do not, on their
own, open a hole; they never stop a start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from gateway.config.model import KeyProblem
from gateway.config.refs import NOT_A_SECRET, RefError

__all__ = ["UNKNOWN_KEY", "ConfigError", "Problem", "display", "located", "problems_from", "without_doubles"]


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


def display(path: Path) -> str:
    """A path as the operator typed it: relative to the working directory when it is inside it."""
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


UNKNOWN_KEY = "unknown key (check the spelling against config.example.toml)"
_MESSAGES = {"extra_forbidden": UNKNOWN_KEY, "missing": "required key is missing"}


def problems_from(file: str, exc: ValidationError, prefix: str = "") -> list[Problem]:
    """pydantic's errors as problems, each under the dotted key (below ``prefix``) it is about."""
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


def located(file: str, found: list[RefError]) -> list[Problem]:
    return [Problem(file, e.key, e.message) for e in found]


def without_doubles(problems: list[Problem]) -> list[Problem]:
    """One problem per mistake: a reference under a misspelt key is reported as the unknown key it
    is; a reference refused elsewhere is not also reported as the invalid value it was left as."""
    unknown = {(p.file, p.key) for p in problems if p.message == UNKNOWN_KEY}

    def under_unknown(p: Problem) -> bool:
        return any(
            p.file == file and (p.key == key or p.key.startswith((f"{key}.", f"{key}[")))
            for file, key in unknown
        )

    kept = [p for p in problems if not (p.message == NOT_A_SECRET and under_unknown(p))]
    refused = {(p.file, p.key) for p in kept if p.message == NOT_A_SECRET}
    return [p for p in kept if p.message == NOT_A_SECRET or (p.file, p.key) not in refused]
