"""`raymlops serve` as a user runs it in a terminal: its sockets, a second endpoint, the monitor, Ctrl-C.

One real `raymlops serve` on an embedded head (its own process group, as a
terminal gives it). While it runs: every socket its processes listen on is
on ``serving.host``; a second `raymlops serve` of another project on the same
port exits 2 naming the port and the key; `raymlops monitor retrain` finds the
monitor this endpoint started through the record under the storage home.
Then Ctrl-C (SIGINT to the process group) stops it all within 10 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import demo_raw_config
from tests.helpers.cli import run_cli
from tests.helpers.head import free_port

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, name: str, port: int) -> Path:
    raw = demo_raw_config(tmp_path / name, name=name)
    raw["serving"] = {"port": port, "num_replicas": 1, "num_cpus_per_replica": 0.1}
    raw["runtime"] = {"num_cpus": 4}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _listening(root: psutil.Process) -> list[tuple[str, int, str]]:
    """(ip, port, process name) of every listening TCP socket of ``root`` and its descendants."""
    pids = {root.pid, *(p.pid for p in root.children(recursive=True))}
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.NoSuchProcess:
                continue
            found.append((conn.laddr.ip, conn.laddr.port, name))
    return found


def test_serve_binds_on_its_host_refuses_a_taken_port_is_found_by_the_cli_and_stops_on_ctrl_c(
    tmp_path, figures
):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYMLOPS_HOME")}
    first = _config(tmp_path, "first", port)
    log = (tmp_path / "serve.out").open("w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "raymlops.cli", "serve", "--config", str(first)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a command in a terminal
    )
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C stops it" not in (tmp_path / "serve.out").read_text():
            assert serve.poll() is None, (tmp_path / "serve.out").read_text()[-4000:]
            assert time.monotonic() < deadline, "serve never came up"
            time.sleep(1)
        root = psutil.Process(serve.pid)
        sockets = _listening(root)
        haproxy = [s for s in sockets if "haproxy" in s[2]]
        assert haproxy, sockets  # HAProxy's frontend, stats and metrics
        assert {ip for ip, _port, _name in haproxy} == {"127.0.0.1"}, haproxy
        assert ("127.0.0.1", port) in {(ip, p) for ip, p, _name in sockets}

        # a second project's endpoint on the same port: a clear error, exit 2, no traceback
        second = run_cli(["serve", "--config", str(_config(tmp_path, "second", port))], REPO, env, 300)
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        assert f"port {port}" in second.stderr and "serving.port" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout

        # the CLI finds the monitor this endpoint started, without --address
        retrain = run_cli(["monitor", "retrain", "--config", str(first), "--reason", "test"], REPO, env, 300)
        assert "retrain triggered" in retrain.stdout, retrain.stdout[-2000:] + retrain.stderr[-3000:]

        interrupted_at = time.monotonic()
        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets it
        serve.wait(timeout=30)
        stopped_s = time.monotonic() - interrupted_at
        assert stopped_s <= 10, f"serve took {stopped_s:.1f} s to stop after Ctrl-C"
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
        log.close()
    assert not (tmp_path / "first" / "runtime" / "cluster.json").exists()  # its record goes with it
    figures.update(
        listening_sockets=len(sockets),
        haproxy_binds=sorted({f"{ip}:{p}" for ip, p, _n in haproxy}),
        second_endpoint_exit=second.returncode,
        stopped_after_ctrl_c_s=round(stopped_s, 1),
    )
