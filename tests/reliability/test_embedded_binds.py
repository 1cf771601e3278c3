"""The embedded head a laptop user gets: its dashboard and Jobs API listen on loopback only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import demo_raw_config

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from urllib.parse import urlparse

import psutil

from raymlops import runtime
from raymlops.config import parse_config

cfg = parse_config(json.loads(sys.argv[1]))
with runtime.session(cfg, log_to_driver=False) as rt:
    ports = {"dashboard": urlparse(rt.dashboard_url).port}
    session = {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [
        (c.laddr.ip, c.laddr.port, c.pid)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in session
    ]
    print(json.dumps({"url": rt.dashboard_url, "ports": ports, "listening": listening}))
"""


def _probe(script: str, raw: dict, timeout_s: int) -> dict:
    """Run ``script`` with the config in its own process (an embedded head, not the shared one)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    probe = subprocess.run(
        [sys.executable, "-c", script, json.dumps(raw)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    return json.loads(probe.stdout.strip().splitlines()[-1])


def test_the_embedded_dashboard_and_jobs_api_listen_on_loopback_only(tmp_path, figures):
    found = _probe(PROBE, demo_raw_config(tmp_path / "home", name="binds"), 180)
    dashboard = {ip for ip, port, _pid in found["listening"] if port == found["ports"]["dashboard"]}
    assert dashboard == {"127.0.0.1"}, found  # the dashboard, and with it the Jobs API
    assert found["url"].startswith("http://127.0.0.1:")
    figures.update(
        dashboard_listens_on=sorted(dashboard),
        session_listeners=len(found["listening"]),
        non_loopback_listeners=sorted({ip for ip, _port, _pid in found["listening"]} - {"127.0.0.1"}),
    )


JOB_PROBE = """
import json, socket, sys, time

from raymlops import runtime
from raymlops.config import parse_config
from raymlops.monitor._actor import RayJobs

held = socket.socket()
try:  # Ray's fixed agent port, as another Ray on the machine holds it (it may hold it already)
    held.bind(("127.0.0.1", 52365))
    held.listen()
except OSError:
    pass
cfg = parse_config(json.loads(sys.argv[1]))
with runtime.session(cfg, log_to_driver=False) as rt:
    jobs = RayJobs(rt.dashboard_url)
    schema = "{'features': [{'name': 'a', 'kind': 'numeric'}], 'label': {'name': 'y'}}"
    entrypoint = (
        "python -c \\"import os; from raymlops.config import parse_config; "
        "print('JOB', os.environ.get('RAY_ADDRESS'), "
        f"parse_config({{'name': 'x', 'data': {{'schema': {schema}}}}}).ray_address)\\""
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            jobs.submit("probe-job", entrypoint, {"RAYMLOPS_RAY_ADDRESS": rt.address})
            break
        except Exception as e:  # the agent registers a few seconds after the head starts
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    while jobs.status("probe-job") not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(0.5)
    logs = jobs._get().get_job_logs("probe-job")
    print(json.dumps({"gcs": rt.address, "status": jobs.status("probe-job"), "logs": logs}))
"""


def test_a_job_on_the_embedded_head_runs_there_beside_another_ray(tmp_path, other_ray, figures):
    found = _probe(JOB_PROBE, demo_raw_config(tmp_path / "home", name="jobhere"), 300)
    assert found["status"] == "SUCCEEDED", found  # the agent serves jobs although 52365 is taken
    job_line = next(line for line in found["logs"].splitlines() if line.startswith("JOB "))
    _, supervisor_address, attached_to = job_line.split()
    assert attached_to == found["gcs"]  # raymlops' address wins over what the supervisor set
    figures.update(
        supervisor_ray_address=supervisor_address, job_attaches_to=attached_to, other_ray=other_ray
    )
