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


def test_the_embedded_dashboard_and_jobs_api_listen_on_loopback_only(tmp_path, figures):
    raw = demo_raw_config(tmp_path / "home", name="binds")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # an embedded head, not the shared one
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(raw)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    dashboard = {ip for ip, port, _pid in found["listening"] if port == found["ports"]["dashboard"]}
    assert dashboard == {"127.0.0.1"}, found  # the dashboard, and with it the Jobs API
    assert found["url"].startswith("http://127.0.0.1:")
    figures.update(
        dashboard_listens_on=sorted(dashboard),
        session_listeners=len(found["listening"]),
        non_loopback_listeners=sorted({ip for ip, _port, _pid in found["listening"]} - {"127.0.0.1"}),
    )
