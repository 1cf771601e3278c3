"""`ray job submit` against a real `ray start --head`, then that cluster stopped by its process ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raymlops import data, registry
from raymlops.config import parse_config
from tests.conftest import demo_raw_config
from tests.helpers.head import client_env, free_port

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _run_submit(address: str, *args: str, timeout_s: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ray", "job", "submit", "--address", address, "--working-dir", str(REPO), "--", "python", *args],
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
    )


def _submit(address: str, *args: str) -> list[str]:
    done = _run_submit(address, *args)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stdout.lower()
    return [line for line in done.stdout.splitlines() if line.strip()]


def _last_json(lines: list[str]) -> dict:
    for line in reversed(lines):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError("no JSON summary line:\n" + "\n".join(lines[-20:]))


def test_ingest_then_pipeline_jobs_serve_a_champion_on_a_real_head(ray_head, tmp_path):
    """`raymlops submit` ingests; `ray job submit` runs the pipeline: train, gate, promote, deploy."""
    import requests

    from tests.helpers.records import GOOD

    raw = demo_raw_config(
        tmp_path / "home",
        training={"num_workers": 2, "epochs": 3, "learning_rate": 0.01, "cpus_per_worker": 0.5},
        serving={"port": free_port(), "num_replicas": 1},
    )
    config_path = tmp_path / "job.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    source = tmp_path / "customers.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(data.generate_demo_data(1200, seed=41), source)

    submitted = subprocess.run(
        [sys.executable, "-m", "raymlops.cli", "submit", "ingest", "--config", str(config_path),
         "--address", ray_head, "--", "--source", str(source)],
        env=client_env(), capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout[-4000:] + submitted.stderr[-4000:]
    ingest = _last_json([line for line in submitted.stdout.splitlines() if line.startswith("{")])
    assert ingest["ok"] and ingest["data_version"] == 0 and ingest["num_rows_added"] == 1200
    assert "SUCCEEDED" in submitted.stdout

    done = _last_json(_submit(ray_head, "jobs/pipeline.py", "--config", str(config_path)))
    assert done["ok"] and done["model_version"] == 1 and done["data_version"] == 0
    assert done["gate_passed"] and done["promoted"]
    assert done["holdout_accuracy"] > done["majority_baseline"]

    cfg = parse_config(raw)
    assert registry.resolve(cfg, f"{cfg.name}/1").run_id == done["run_id"]
    assert registry.champion(cfg).version == 1
    assert data.get_version(cfg.table_uri, 0).digest == ingest["digest"]
    # the job has ended; its endpoint keeps serving the champion
    answer = requests.post(f"{done['endpoint_url']}/predict", json={"records": [GOOD]}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "1"


def test_a_job_with_a_bad_config_fails_with_a_json_error(ray_head, tmp_path):
    """The job itself validates the config (the cluster may have another raymlops than the client)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**demo_raw_config(tmp_path), "trainig": {}}))
    done = _run_submit(ray_head, "jobs/train.py", "--config", str(bad), timeout_s=300)
    assert done.returncode != 0
    last = _last_json([line for line in done.stdout.splitlines() if line.strip()])
    assert last == {"ok": False, "error": "ConfigError", "message": last["message"]}
    assert "trainig: unknown key" in last["message"]
