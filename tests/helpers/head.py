"""A real `ray start --head` with its dashboard (the Jobs API) on 127.0.0.1, stopped by its process ids.

Shared by the jobs end-to-end tests and the Jobs API fault tests through the
session fixture ``ray_head`` (one head start, about 20 s, for both).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil


def client_env() -> dict[str, str]:
    """The head uses Ray's default token auth; a client must opt in (the token is in ~/.ray/auth_token)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_head(
    prefix: str, *options: str, extra_env: dict[str, str] | None = None, parent: str = "/tmp"
) -> tuple[Path, int]:
    """`ray start --head` in a temp dir of its own, which finds its processes; returns it and the GCS port."""
    temp_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # short: Ray's socket paths are limited
    gcs_port = free_port()
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            f"--port={gcs_port}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
            *options,
        ],
        env={**client_env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    return temp_dir, gcs_port


def running_head() -> Iterator[str]:
    """Start a real head node with the dashboard (Jobs API) on 127.0.0.1; yields its dashboard URL."""
    dashboard_port = free_port()
    temp_dir, _ = _start_head(
        "rmo-head-",
        "--num-cpus=4",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        "--include-dashboard=true",
        # the agent's default port (52365) is fixed: another Ray on this machine would hold it,
        # leaving this head's agent without HTTP and jobs unsubmittable
        f"--dashboard-agent-listen-port={free_port()}",
    )
    try:
        wait_for_job_agent(f"http://127.0.0.1:{dashboard_port}")
        yield f"http://127.0.0.1:{dashboard_port}"
    finally:
        stop_by_marker(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


def foreign_head() -> Iterator[str]:
    """Another Ray on the same machine, as a user starts one: `ray start --head` with Ray's default ports.

    Its dashboard agent holds Ray's fixed agent port (52365) when that port is
    free, and its GCS is one more `gcs_server` that Ray's address lookup finds.
    Yields its GCS address; stopped by its process ids.
    """
    temp_dir, gcs_port = _start_head("rmo-other-", "--num-cpus=2")
    try:
        yield f"127.0.0.1:{gcs_port}"
    finally:
        stop_by_marker(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_by_marker(marker: str) -> None:
    """Stop only the processes of this head (their command lines name its temp dir)."""
    found = [
        proc
        for proc in psutil.process_iter(["pid", "cmdline"])
        if proc.pid != os.getpid() and any(marker in part for part in (proc.info["cmdline"] or []))
    ]
    mine = {proc.pid: proc for proc in found}
    for proc in found:  # Ray's client server and autoscaler monitor may not name the temp dir
        try:
            mine.update({child.pid: child for child in proc.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    mine.pop(os.getpid(), None)
    for proc in mine.values():
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(list(mine.values()), timeout=15)
    for proc in alive:
        proc.kill()


def wait_for_job_agent(address: str, limit_s: float = 180) -> None:
    """A fresh head answers HTTP before its job agent registers; submit a no-op until one runs."""
    deadline = time.monotonic() + limit_s
    while True:
        done = subprocess.run(
            ["ray", "job", "submit", "--address", address, "--", "python", "-c", "print('ready')"],
            env=client_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the job agent never became ready:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        time.sleep(3)
