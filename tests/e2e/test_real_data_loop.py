"""The whole loop on a real public dataset that ships with scikit-learn (handwritten digits).

Not the demo's generator: real pixel counts, ten classes, and a covariate
shift made by splitting the rows on one pixel. Reference traffic raises no
retrain; shifted traffic with labels drifts, the monitor submits one retrain
job through the Ray Jobs API, its model passes the gate and the endpoint
switches to it with no failed request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_the_loop_closes_on_real_digits_with_a_covariate_shift(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYMLOPS_HOME")}
    run = subprocess.run(
        [sys.executable, "-m", "tests.helpers.real_loop", str(tmp_path / "home")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    context = "\n".join(result["lines"])
    assert result["first_promoted"], result["first_summary"]
    # the gate says how much its holdout can tell
    assert "holdout metrics with 95 % intervals" in result["first_summary"]
    assert "warning: only" in result["first_summary"]  # ~140 holdout rows, under gate.min_holdout_rows
    ok, detail = result["stationary"]
    assert ok and "0 drifted, 0 retrain triggers" in detail, detail + context
    ok, detail = result["drift"]
    assert ok and "triggered" in detail, detail + context
    ok, detail = result["retrain"]
    assert ok, detail + context
    job = result["job"]
    assert job["outcome"] == "promoted" and result["num_triggers"] == 1, job
    assert len(result["served"]) == 2 and result["served"][-1] == job["model_version"], result["served"]
