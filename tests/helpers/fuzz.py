"""Hypothesis settings for the fuzzing tests: the same examples on every run unless asked otherwise.

CI must not fail on a new random draw that nobody can reproduce; each bug a
random run finds becomes an ``@example``. ``RAYMLOPS_FUZZ_RANDOM=1`` explores
new inputs instead (run it locally, often).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=not os.environ.get("RAYMLOPS_FUZZ_RANDOM"),
    )
