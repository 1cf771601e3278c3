"""Run the `raymlops` command as a user does: a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str], timeout_s: int = 900
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raymlops.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
