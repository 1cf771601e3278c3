"""Real servers the tests start on loopback (an MLflow tracking server), stopped by their process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def wait_http(url: str, limit_s: float, what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers; fail early when ``process`` exits."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{what} did not answer {url} within {limit_s:.0f} s")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group a server was started in (its workers too), SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_mlflow_server(
    folder: Path, port: int, artifacts_uri: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``mlflow server`` on 127.0.0.1:``port``: runs in SQLite under ``folder``, artifacts proxied to a URI.

    Started again with the same arguments it serves the same registry (a restart after an outage).
    """
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server", "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
            *("--artifacts-destination", artifacts_uri),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        env={**os.environ, **(env or {})},
        stdout=open(folder / f"mlflow-{port}.log", "ab"),  # noqa: SIM115 - the child owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=folder,
    )
    wait_http(f"http://127.0.0.1:{port}/health", 120, "mlflow server", process)
    return process
