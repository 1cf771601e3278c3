"""`raymlops demo` as a user runs it: a real subprocess with its own embedded Ray head and dashboard.

The demo is the closed loop end to end: stationary traffic raises no retrain,
drifted traffic with late labels makes the monitor submit exactly one retrain
job through the Ray Jobs API, the job's model passes the gate and the endpoint
switches to it with no failed request. The config is the packaged demo config
with fewer epochs and trials, so the test stays a few minutes long.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from raymlops.pipeline import packaged_demo_config
from tests.helpers.cli import run_cli

pytestmark = pytest.mark.e2e


def test_demo_closes_the_loop_and_exits_0_beside_another_ray(tmp_path, other_ray):
    # another `ray start --head` runs on the machine: its gcs_server is one Ray's job supervisor
    # may pick for the retrain job, and its agent may hold Ray's fixed agent port
    raw = yaml.safe_load(packaged_demo_config().read_text())
    raw["training"].update(epochs=5, learning_rate=0.01)
    raw["tuning"].update(num_samples=2, max_concurrent_trials=2)
    raw["retraining"].update(canary_duration_s=2)
    config_path = tmp_path / "demo.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    home = tmp_path / "home"
    env = {**os.environ, "RAYMLOPS_HOME": str(home)}
    env.pop("RAY_ADDRESS", None)

    result = run_cli(["demo", "--rows", "1000", "--config", str(config_path)], tmp_path, env)
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-3000:]
    for step in (
        "generate",
        "ingest and validate",
        "broken rows",
        "prepare",
        "train",
        "sweep",
        "gate",
        "serve",
    ):
        assert step in out
    assert "ok  quarantine: version 1: +96 rows, 4 quarantined" in out
    assert "ok  stationary: 2 windows judged, 0 drifted, 0 retrain triggers; 0 failed requests" in out
    assert "ok  retrain: job raymlops-retrain-churn-" in out and " promoted: " in out
    assert "0 failed; 1 retrain job(s) in all" in out
    # the retrained version was judged on live traffic before it was promoted, its figures shown
    assert "canary passed: version" in out and "error_rate 0" in out, out[-3000:]
    # a healthy demo prints raymlops' own lines only: no traceback, no Ray or MLflow chatter
    printed = out + result.stderr
    for noise in (
        "Traceback",
        "Error in training function",
        "WARNING",
        "(raylet)",
        "Progress bars disabled",
        "INFO mlflow",
        "Successfully registered model",
        "execution finished",
    ):
        assert noise not in printed, f"{noise!r} reached the terminal:\n{printed[-4000:]}"
    log_line = next(line for line in out.splitlines() if line.strip().startswith("Ray/MLflow log"))
    log_path = Path(log_line.split()[2])
    assert log_path.is_relative_to(home), log_line
    chatter = log_path.read_text()
    assert "execution finished" in chatter  # Ray Data's lines from the training workers: kept, not shown
    served = next(line for line in out.splitlines() if line.strip().startswith("endpoint        served"))
    assert "→" in served and ", 0 failed" in served  # two versions, the second after the retrain

    state = json.loads((home / "monitor" / "churn" / "state.json").read_text())
    assert state["num_triggers"] == 1 and [j["outcome"] for j in state["jobs"]] == ["promoted"]
    job = state["jobs"][0]
    assert state["champion_version"] == job["model_version"]  # the monitor follows the new champion
    judged = [
        json.loads(line) for line in (home / "monitor" / "churn" / "windows.jsonl").read_text().splitlines()
    ]
    windows = [w for w in judged if w["kind"] == "drift"]
    assert [w["drifted"] for w in windows[:2]] == [False, False]  # the stationary windows
    result_file = json.loads(
        (home / "monitor" / "churn" / "jobs" / f"{job['submission_id']}.json").read_text()
    )
    assert result_file["outcome"] == "promoted" and result_file["num_labelled_rows"] >= 200
    html = (home / "monitor" / "churn" / "report.html").read_text()
    assert "<svg" in html and "Drift report: churn" in html
    assert (home / "data" / "training" / "_delta_log").is_dir()
    assert not (tmp_path / ".raymlops").exists()  # RAYMLOPS_HOME wins over the config's home

    # the monitoring commands read what the loop left behind, without Ray
    status = run_cli(["monitor", "status", "--config", str(config_path)], tmp_path, env, timeout_s=120)
    assert status.returncode == 0, status.stderr
    assert "retrain jobs   1 triggered: promoted 1" in status.stdout
    report = run_cli(["monitor", "report", "--config", str(config_path), "--rows", "300"], tmp_path, env, 120)
    assert report.returncode == 0, report.stderr
    assert "window: 300 rows" in report.stdout and "HTML report:" in report.stdout
