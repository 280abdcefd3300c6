"""Hypothesis settings for the property tests: bounded and repeatable in the normal suite, much
longer and random with ``SMSGW_FUZZ=deep`` (or ``SMSGW_FUZZ=N`` for N times the examples).

The suite's profile is derandomized (the same examples on every run, so CI never turns red by
chance) and keeps no example database; a deep run draws fresh examples each time and keeps the
failing ones in ``.hypothesis/`` so the next run tries them first.
"""

from __future__ import annotations

import os
from typing import Final

from hypothesis import HealthCheck, settings

_MODE: Final = os.environ.get("SMSGW_FUZZ", "").strip().lower()
#: How many times the suite's example counts a run uses.
FACTOR: Final = 50 if _MODE == "deep" else (int(_MODE) if _MODE.isdigit() and int(_MODE) > 0 else 1)

_COMMON: Final = {
    "deadline": None,  # wall-clock per example is no property of the gateway
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # a gateway started once per test serves every example
    ],
}
settings.register_profile("smsgw", derandomize=True, database=None, **_COMMON)
settings.register_profile("smsgw-deep", **_COMMON)
settings.load_profile("smsgw" if FACTOR == 1 else "smsgw-deep")


def examples(n: int) -> int:
    """``n`` examples in the suite, ``n * FACTOR`` in a deeper run."""
    return n * FACTOR
