"""The driver of a retraining job killed mid-training: the re-submitted job resumes, it does not redo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from deltalake import DeltaTable

from raymlops.config import parse_config

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("ray_cluster")]

REPO = Path(__file__).resolve().parents[2]
SUBMISSION = "resume-1"
NUM_REQUESTS = 60
ROWS_PER_REQUEST = 5
EPOCHS = 24  # early stopping off: ~0.4 s an epoch here, long enough to be killed after its first checkpoint


def _send_labelled_traffic(cfg, ep) -> None:
    """New customers (ids the training table never had) to /predict, then their labels to /feedback."""
    from raymlops.data import generate_demo_data
    from raymlops.pipeline._loop import Traffic

    traffic = Traffic(ep.url, cfg)
    traffic.send(
        generate_demo_data(NUM_REQUESTS * ROWS_PER_REQUEST, seed=77, id_offset=20_000_000),
        per_request=ROWS_PER_REQUEST,
    )
    assert traffic.num_requests == NUM_REQUESTS and not traffic.failures, traffic.failures[:3]


def _retrain(config_path: Path) -> subprocess.Popen[str]:
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    if (Path.home() / ".ray" / "auth_token").exists():
        env["RAY_AUTH_MODE"] = "token"
    command = [sys.executable, "-m", "raymlops.cli", "retrain", "--config", str(config_path)]
    return subprocess.Popen(
        [*command, "--submission-id", SUBMISSION],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_killed_retrain_driver_resumes_from_its_checkpoint_and_appends_once(reliable, tmp_path, figures):
    cfg, ep, _ = reliable
    _send_labelled_traffic(cfg, ep)
    raw = cfg.model_dump(mode="json", by_alias=True)
    raw["training"] = {**raw["training"], "epochs": EPOCHS, "early_stopping_patience": 0}
    retrain_cfg = parse_config(raw)
    config_path = tmp_path / "raymlops.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    versions_before = DeltaTable(cfg.table_uri).version()

    def labelled() -> int:
        from raymlops import monitor

        return monitor.labelled_rows(cfg).table.num_rows

    deadline = time.monotonic() + 60
    while labelled() < NUM_REQUESTS * ROWS_PER_REQUEST:
        assert time.monotonic() < deadline, "the labelled rows never reached the logs"
        time.sleep(0.5)

    client = mlflow.MlflowClient(cfg.mlflow_tracking_uri)
    run_name = f"{cfg.name}-{SUBMISSION}"

    # what Ray Train resumes from: the checkpoints its controller has put on record
    snapshot = cfg.home_path / "train" / run_name / "checkpoint_manager_snapshot.json"

    def checkpoints_on_record() -> int:
        try:
            return len(json.loads(snapshot.read_text())["checkpoint_results"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return 0

    first = _retrain(config_path)
    started = time.monotonic()
    try:
        while checkpoints_on_record() < 1:
            assert first.poll() is None, first.communicate()[0][-4000:]
            assert time.monotonic() - started < 240, "no checkpoint on record within 240 s"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # the driver dies without any chance to clean up
        first_output = first.communicate(timeout=30)[0]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert DeltaTable(cfg.table_uri).version() == versions_before + 1  # the rows went in once

    second = _retrain(config_path)
    try:
        output = second.communicate(timeout=420)[0]
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, first_output[-3000:] + "\n----\n" + output[-5000:]
    assert f"resuming retrain {SUBMISSION}" in output
    assert f"resuming {cfg.name}-{SUBMISSION} from its last checkpoint" in output
    assert DeltaTable(cfg.table_uri).version() == versions_before + 1  # not appended a second time
    outcome = json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))
    assert outcome["outcome"] in ("promoted", "rejected") and outcome["data_version"] == versions_before + 1
    assert outcome["num_labelled_rows"] == NUM_REQUESTS * ROWS_PER_REQUEST

    runs = client.search_runs(
        [client.get_experiment_by_name(retrain_cfg.name).experiment_id],
        filter_string=f"tags.`ray.train.run_name` = '{run_name}'",
    )
    assert len(runs) == 1  # one MLflow run across both drivers
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["raymlops.resumed"] == "true"
    resumed_from = int(run.data.metrics["resumed_from_epoch"])
    epochs = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
    assert 0 <= resumed_from < EPOCHS - 1
    assert sorted(set(epochs)) == list(range(EPOCHS))  # every epoch is in the history
    # redone: the epochs after the last checkpoint Ray Train had recorded when the driver died
    redone = len(epochs) - len(set(epochs))
    assert redone <= 3

    # the same submission again (in this process): a finished retrain reports, changes nothing
    from raymlops import pipeline, registry

    versions = [v.version for v in registry.list_versions(cfg)]
    again = pipeline.retrain(retrain_cfg, submission_id=SUBMISSION)
    assert (again.outcome, again.model_version) == (outcome["outcome"], outcome["model_version"])
    # a driver killed after its promotion (or rejection) but before recording it ends the same way
    progress = Path(cfg.locations.retrain_uri(SUBMISSION)) / "progress.json"
    recorded = json.loads(progress.read_text())
    del recorded["outcome"]
    progress.write_text(json.dumps(recorded))
    recovered = pipeline.retrain(retrain_cfg, submission_id=SUBMISSION)
    assert (recovered.outcome, recovered.model_version) == (outcome["outcome"], outcome["model_version"])
    assert [v.version for v in registry.list_versions(cfg)] == versions  # nothing trained or registered
    assert DeltaTable(cfg.table_uri).version() == versions_before + 1
    assert (
        len(
            client.search_runs(
                [run.info.experiment_id], filter_string=f"tags.`ray.train.run_name` = '{run_name}'"
            )
        )
        == 1
    )
    figures.update(
        epochs_before_kill=resumed_from + 1 + redone,
        resumed_after_epoch=resumed_from,
        epochs_redone=redone,
        epochs_after_resume=EPOCHS - resumed_from - 1,
        data_versions_appended=DeltaTable(cfg.table_uri).version() - versions_before,
        outcome=outcome["outcome"],
    )
