"""Training on the shared Ray cluster: quality, reproducibility, recovery, fail-fast."""

from __future__ import annotations

import mlflow
import numpy as np
import pyarrow.csv as pacsv
import pytest
import torch

from raymlops import data, train
from raymlops.errors import InsufficientResourcesError
from tests.helpers import faulty_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]

TRAINING = {"num_workers": 2, "epochs": 4, "batch_size": 128, "learning_rate": 0.003, "cpus_per_worker": 0.5}


@pytest.fixture(scope="module")
def prepared_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train-data")
    pacsv.write_csv(data.generate_demo_data(3000, seed=11), folder / "train.csv")
    return str(folder / "train.csv")


def _prepare(make_config, source, **sections):
    cfg = make_config(training={**TRAINING, **sections.pop("training", {})}, **sections)
    version = data.ingest(source, cfg)
    return cfg, data.prepare(version, cfg)


def _holdout_accuracy(result, cfg):
    model = train.load_weights(result)
    test = result.prepared.test.to_pandas()
    features = np.stack(result.prepared.preprocessor.transform_batch(test)["features"].to_numpy()).astype(
        np.float32
    )
    with torch.no_grad():
        predicted = (model(torch.from_numpy(features)).squeeze(-1) > 0).numpy().astype(int)
    truth = test["churned"].to_numpy()
    majority = max(truth.mean(), 1 - truth.mean())
    return float((predicted == truth).mean()), float(majority)


def test_two_runs_give_equal_metrics_and_weights_and_beat_the_baseline(make_config, prepared_source):
    cfg, prepared = _prepare(make_config, prepared_source)
    first = train.run(prepared, cfg)
    second = train.run(prepared, cfg)
    assert first.history == second.history
    a, b = train.load_weights(first).state_dict(), train.load_weights(second).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    accuracy, majority = _holdout_accuracy(first, cfg)
    assert accuracy > majority + 0.08, (accuracy, majority)

    run = mlflow.MlflowClient(cfg.mlflow_tracking_uri).get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["data.digest"] == prepared.dataset_version.digest
    assert run.data.tags["data.version"] == "0"
    assert run.data.params["training.num_workers"] == "2"
    assert "version.ray" in run.data.tags and "raymlops.config_hash" in run.data.tags
    history = mlflow.MlflowClient(cfg.mlflow_tracking_uri).get_metric_history(first.run_id, "val_loss")
    assert [m.step for m in history] == list(range(len(first.history)))


def test_a_killed_worker_resumes_from_its_checkpoint(make_config, prepared_source):
    cfg, prepared = _prepare(
        make_config, prepared_source, model={"factory": "tests.helpers.faulty_model:build"}
    )
    batches_per_epoch = -(-prepared.split_num_rows[0] // 2 // TRAINING["batch_size"])
    faulty_model.BATCHES_PER_EPOCH_FILE.write_text(str(int(batches_per_epoch * 2.5)))  # mid epoch 2
    faulty_model.MARKER.write_text("armed")
    try:
        result = train.run(prepared, cfg)
    finally:
        faulty_model.BATCHES_PER_EPOCH_FILE.unlink(missing_ok=True)
        armed = faulty_model.MARKER.exists()
        faulty_model.MARKER.unlink(missing_ok=True)
    assert not armed, "the worker was never killed"
    assert result.num_attempts == 2
    assert [int(m["epoch"]) for m in result.history] == list(range(TRAINING["epochs"]))
    client = mlflow.MlflowClient(cfg.mlflow_tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["raymlops.resumed"] == "true" and run.data.tags["raymlops.num_attempts"] == "2"
    resumed = client.get_metric_history(result.run_id, "resumed_from_epoch")
    # The kill came in epoch 2. Train V2 registers reported checkpoints asynchronously, so the
    # newest one it knows of at that moment is epoch 1's or, if that was still in flight, epoch 0's.
    assert len(resumed) == 1 and resumed[0].value in (0.0, 1.0)
    val_steps = [m.step for m in client.get_metric_history(result.run_id, "val_loss")]
    assert set(val_steps) == set(range(TRAINING["epochs"]))  # re-run epochs show up twice in MLflow


def test_gpu_config_without_a_gpu_fails_fast(make_config, prepared_source):
    cfg, prepared = _prepare(make_config, prepared_source, training={"use_gpu": True})
    with pytest.raises(InsufficientResourcesError, match="needs 2 GPU\\(s\\), but the cluster has 0"):
        train.run(prepared, cfg)
    too_big = make_config(training={**TRAINING, "cpus_per_worker": 3.0})
    with pytest.raises(InsufficientResourcesError, match="needs 6 CPUs"):
        train.run(prepared, too_big)


def test_model_inputs_equal_rays_preprocessor(make_config, prepared_source, monkeypatch):
    from raymlops.data._features import ENV_SLOW_FEATURES

    _, prepared = _prepare(make_config, prepared_source)
    fast = train.model_inputs(prepared.validation, prepared, "binary").to_pandas()
    monkeypatch.setenv(ENV_SLOW_FEATURES, "1")  # Ray's own transform, step by step
    slow = train.model_inputs(prepared.validation, prepared, "binary").to_pandas()
    assert len(fast) == len(slow) == prepared.split_num_rows[1]
    assert np.array_equal(np.stack(fast["x"].to_numpy()), np.stack(slow["x"].to_numpy()))
    assert np.array_equal(fast["y"].to_numpy(), slow["y"].to_numpy())


def test_embedded_ray_trains_without_the_placement_group_cleaner_actor(monkeypatch):
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    def kinds(trainer_class):
        trainer = trainer_class(lambda _cfg: None, scaling_config=ScalingConfig(num_workers=1))
        return {type(c) for c in trainer._create_default_callbacks()}

    assert train.embedded_ray()  # the session cluster gets the embedded head's environment
    assert PlacementGroupCleanerCallback not in kinds(train.trainer_class())
    monkeypatch.delenv("RAYMLOPS_EMBEDDED_RAY")  # a cluster of its own keeps Ray Train's cleaner
    assert train.trainer_class() is TorchTrainer
    assert PlacementGroupCleanerCallback in kinds(TorchTrainer)
