"""A sweep on the shared cluster: ASHA stops trials early, child runs are logged, the best is registered."""

from __future__ import annotations

import time

import mlflow
import pyarrow.csv as pacsv
import pytest
import ray

from raymlops import data, registry, tune

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]


def test_sweep_stops_the_trials_that_fall_behind_and_registers_the_best(tmp_path, make_config):
    cfg = make_config(
        # Enough epochs that ASHA's stop (it reaches Tune through Ray Train's controller poll)
        # lands before a behind trial has run them all: with 3 epochs of ~30 ms a trial had
        # sometimes finished before the stop arrived.
        training={"num_workers": 1, "epochs": 20, "cpus_per_worker": 0.5, "batch_size": 256},
        tuning={
            # ASHA is asynchronous: a trial stops when it is behind the trials that reached the
            # same rung before it. A grid run one at a time, a good learning rate first, makes
            # the two tiny ones certainly behind after one epoch (random order made this flaky).
            "num_samples": 1,
            "max_concurrent_trials": 1,
            "grace_period": 1,
            "reduction_factor": 2,
            "search_space": {
                "learning_rate": {"type": "grid", "values": [0.02, 0.0001, 0.00005]},
            },
        },
    )
    pacsv.write_csv(data.generate_demo_data(2000, seed=31), tmp_path / "d.csv")
    prepared = data.prepare(data.ingest(str(tmp_path / "d.csv"), cfg), cfg)
    lines: list[str] = []
    groups_before = set(ray.util.placement_group_table())
    cpus_before = ray.available_resources().get("CPU", 0.0)
    sweep = tune.run(prepared, cfg, progress=lines.append)
    # every trial's workers gave their CPUs back, the ones ASHA killed included
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0.0) < cpus_before:
        time.sleep(0.5)  # the raylet reports freed resources asynchronously
    assert ray.available_resources().get("CPU", 0.0) >= cpus_before
    left = {
        group_id: entry["state"]
        for group_id, entry in ray.util.placement_group_table().items()
        if group_id not in groups_before and entry["state"] != "REMOVED"
    }
    assert not left, f"placement groups outlived the sweep: {left}"

    assert len(sweep.trials) == 3
    stopped = {t.hyperparameters["learning_rate"] for t in sweep.trials if t.status == "STOPPED"}
    assert {0.0001, 0.00005} <= stopped, [(t.status, t.epochs_run, t.hyperparameters) for t in sweep.trials]
    assert all(t.epochs_run < 20 for t in sweep.trials if t.status == "STOPPED")
    best = min((t for t in sweep.trials if t.status == "FINISHED"), key=lambda t: t.best_val_loss)
    assert sweep.best.run_id == best.run_id
    assert sweep.best.metrics["val_loss"] == pytest.approx(best.best_val_loss)
    assert sweep.best.hyperparameters["learning_rate"] in (0.01, 0.02)

    client = mlflow.MlflowClient(cfg.mlflow_tracking_uri)
    children = client.search_runs(
        [client.get_run(sweep.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{sweep.parent_run_id}'",
    )
    assert {c.info.run_id for c in children} == {t.run_id for t in sweep.trials}
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"}
    assert client.get_run(sweep.parent_run_id).data.tags["raymlops.best_run_id"] == sweep.best.run_id

    mv = registry.register(sweep.best, cfg)
    predictor = registry.load_predictor(cfg, f"{cfg.name}/{mv.version}")
    assert len(predictor.predict_frame(prepared.test.to_pandas().head(5))) == 5
    assert any("stopped early by ASHA" in line for line in lines)
