"""The Jobs API unreachable when the monitor wants to retrain, on a real head with token auth.

The monitor runs in its own process (as it does in its actor) and submits
through a TCP relay to the head's dashboard. The relay is closed at first:
every submission fails and is retried with backoff. Once it opens, exactly
one retrain job reaches the head, runs, and the monitor reads its outcome.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.helpers.head import client_env, free_port

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]

MONITOR = """
import json, sys, time
from raymlops.config import parse_config
from raymlops.monitor._actor import RayJobs
from raymlops.monitor._monitor import Monitor

cfg = parse_config(json.loads(sys.argv[1]))
monitor = Monitor(cfg, jobs=RayJobs(sys.argv[2]), champion=lambda: None)
monitor.restore()
print(json.dumps([monitor.request_retrain("reliability test")]), flush=True)
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    events = monitor.check()
    job = monitor.state.active_job
    if job is not None and job.stage == "pending":  # refused so far: no cooldown may have started
        assert monitor.status()["cooldown_left_s"] == 0, monitor.status()
    if events:
        print(json.dumps(events), flush=True)
    if any("outcome" in e for e in events):
        break
    time.sleep(0.5)
print(json.dumps({"state": monitor.status()}), flush=True)
"""


class Relay:
    """A TCP relay to ``target_port`` that refuses connections until ``open()`` (the API 'comes back')."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._server: socket.socket | None = None
        self.num_connections = 0

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.num_connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with a, b:
            while True:
                ready, _, _ = select.select([a, b], [], [], 30)
                if not ready:
                    return
                for source in ready:
                    chunk = source.recv(65536)
                    if not chunk:
                        return
                    (b if source is a else a).sendall(chunk)


def test_an_unreachable_jobs_api_is_retried_with_backoff_then_gets_exactly_one_job(
    ray_head, tmp_path, figures
):
    from tests.conftest import demo_raw_config

    raw = demo_raw_config(
        tmp_path / "home",
        name="jobsdown",
        # the default submit_max_attempts: no retry budget, the trigger waits for the API
        retraining={"submit_backoff_s": 1.0, "submit_backoff_max_s": 2.0, "min_labelled_rows": 10},
    )
    # token auth is on (Ray 2.60's default for a new head): a request without the token is refused
    assert requests.get(f"{ray_head}/api/jobs/", timeout=10).status_code in (401, 403)

    relay = Relay(int(ray_head.rsplit(":", 1)[1]))
    stderr_path = tmp_path / "monitor.stderr"
    with stderr_path.open("w") as stderr:  # a file, not a pipe: a chatty monitor never blocks on it
        monitor = subprocess.Popen(
            [sys.executable, "-c", MONITOR, json.dumps(raw), f"http://127.0.0.1:{relay.port}"],
            cwd=REPO,
            env=client_env(),  # RAY_AUTH_MODE=token: the monitor's JobSubmissionClient sends the token
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    events: list[str] = []
    failures = 0
    opened_at = None
    try:
        assert monitor.stdout is not None
        for line in monitor.stdout:
            if line.startswith("{"):
                state = json.loads(line)["state"]
                break
            events.extend(json.loads(line))
            failures = sum("submission failed" in e for e in events)
            if failures >= 7 and opened_at is None:  # longer than the old budget of 5 attempts
                opened_at = time.monotonic()
                relay.open()
        else:
            raise AssertionError("the monitor ended without its state:\n" + stderr_path.read_text()[-4000:])
        monitor.wait(timeout=60)
    finally:
        if monitor.poll() is None:
            monitor.kill()
        relay.close()

    assert failures >= 7 and opened_at is not None, events
    submitted = [e for e in events if e.endswith(": submitted")]
    assert len(submitted) == 1, events
    job_id = submitted[0].split()[1].rstrip(":")
    listed = subprocess.run(
        ["ray", "job", "list", "--address", ray_head, "--log-style", "record"],
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(f"submission_id='{job_id}'") == 1  # exactly one job on the head
    assert listed.stdout.count("submission_id='raymlops-retrain-jobsdown-") == 1
    job = state["jobs"][-1]
    assert job["submission_id"] == job_id and job["attempts"] == failures + 1
    assert job["outcome"] == "skipped", job  # no labelled rows in this home: the job ran and said so
    figures.update(
        failed_submissions=failures,
        jobs_submitted=len(submitted),
        jobs_on_head=listed.stdout.count("submission_id='raymlops-retrain-jobsdown-"),
        job_outcome=job["outcome"],
        relay_connections=relay.num_connections,
    )
