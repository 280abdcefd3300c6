"""What every ``smsgw`` command that reads a config does with one that has problems."""

from __future__ import annotations

import sys

from gateway.config import Config, ConfigError
from gateway.server.config import load_config

__all__ = ["load_or_exit"]


def load_or_exit(path: str, outcome: str = "nothing was started") -> Config:
    """The config, or every problem (and warning) on stderr and exit status 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        for warning in exc.warnings:
            print(warning.as_warning(), file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); {outcome}.", file=sys.stderr)
        raise SystemExit(2) from None
