"""`raymlops demo` as a user runs it: a real subprocess with its own embedded Ray head."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_every_stage_and_exits_0(tmp_path):
    env = {**os.environ, "RAYMLOPS_HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-m", "raymlops.cli", "demo", "--rows", "1000"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in (
        "[1] generate",
        "[2] ingest and validate",
        "[3] ingest a batch with broken rows",
        "[4] prepare",
        "[5] train",
        "[6] validation gate",
    ):
        assert step in out
    assert "ok  quarantine: version 1: +96 rows, 4 quarantined" in out
    assert "ok  gate: version 1 promoted to champion" in out and "gate PASSED" in out
    assert "data version 0: 1000 rows" in out and "data version 1: 1096 rows" in out
    assert (Path(env["RAYMLOPS_HOME"]) / "data" / "training" / "_delta_log").is_dir()
    assert not (tmp_path / ".raymlops").exists()  # RAYMLOPS_HOME wins over the config's home
