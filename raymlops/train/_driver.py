"""The driver of a training run: MLflow run and resume, the trainer, the result."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from raymlops.config import ProjectConfig
from raymlops.data import PreparedData
from raymlops.errors import ConfigError, TrainingError
from raymlops.train._inputs import ordered_execution, worker_shards
from raymlops.train._model import output_dim_for
from raymlops.train._resources import (
    check_resources,
    embedded_ray,
    placement_group_record,
    release_placement_group,
    scaling_config,
    torch_config,
    trainer_class,
)
from raymlops.train._result import TrainResult, checkpoint_uri, result_from_checkpoint
from raymlops.train._worker import IN_MEMORY_SHARD_BYTES, train_loop

Progress = Callable[[str], None]


def run(
    prepared: PreparedData,
    config: ProjectConfig,
    *,
    overrides: dict[str, Any] | None = None,
    run_name: str | None = None,
    progress: Progress | None = None,
    parent_run_id: str | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train on ``prepared`` with Ray Train and track the run in MLflow.

    Args:
        prepared: output of ``data.prepare``.
        config: the project config (model, training, storage).
        overrides: hyperparameters that replace config values (used by sweeps).
        run_name: the Ray Train run name; re-using one resumes that run on purpose.
        progress: called with a line when the run starts and with its best epoch;
            rank 0's worker prints one line per epoch (Ray forwards it to the driver).
        parent_run_id: MLflow parent run (a sweep), if any.
        callbacks: Ray Train run callbacks (a sweep passes Tune's report callback).

    Raises:
        InsufficientResourcesError: the cluster cannot hold the requested workers (before any start).
        TrainingError: training failed more often than ``training.max_failures``.

    Example:
        >>> result = run(data.prepare(version, cfg), cfg)  # doctest: +SKIP
        >>> result.metrics["val_loss"]  # doctest: +SKIP
        0.52
    """
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig

    from raymlops import runtime
    from raymlops._internal import tracking

    say = progress or (lambda _m: None)
    training = config.training
    check_resources(config, ray.cluster_resources())
    loop_config = _loop_config(config, prepared, overrides or {})
    client = runtime.mlflow_client(config)
    tracking_uri = config.mlflow_tracking_uri
    run_name = run_name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    storage_path = config.locations.train_uri

    experiment_id = tracking.experiment_id(config, client)
    tags = {
        "raymlops.stage": "train",
        "raymlops.model_name": config.name,
        "raymlops.config_hash": tracking.config_hash(config),
        "data.table_uri": prepared.dataset_version.table_uri,
        "data.version": str(prepared.dataset_version.version),
        "data.digest": prepared.dataset_version.digest,
        "ray.train.run_name": run_name,
        **tracking.environment_tags(),
    }
    commit = tracking.git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    params = tracking.config_params(config)
    params.update({f"override.{k}": json.dumps(v) for k, v in (overrides or {}).items()})
    params.update(
        {
            "data.num_train_rows": str(prepared.split_num_rows[0]),
            "data.num_validation_rows": str(prepared.split_num_rows[1]),
            "model.input_dim": str(prepared.feature_dim),
        }
    )
    run_id = _unfinished_run(client, experiment_id, run_name)
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        tracking.log_params(client, run_id, params)
    else:  # Ray Train resumes a run name from its last checkpoint; keep one MLflow run for it
        _check_same_params(client, run_id, run_name, params)
        say(f"resuming {run_name} from its last checkpoint (MLflow run {run_id})")
        client.update_run(run_id, status="RUNNING")
    hyperparameters = {k: v for k, v in loop_config.items() if k not in _RUN_KEYS}
    client.set_tag(run_id, "raymlops.hyperparameters", json.dumps(hyperparameters, sort_keys=True))
    client.log_text(run_id, prepared.dataset_version.to_json(), "data/dataset_version.json")
    datasets = worker_shards(prepared, config.model.task, training.num_workers)
    small = all(ds.size_bytes() <= IN_MEMORY_SHARD_BYTES for ds in datasets.values())
    # on an embedded head rank 0 records its placement group here (see trainer_class)
    placement_group_path = placement_group_record(config, run_name) if embedded_ray() else None
    loop_config.update(
        {
            "mlflow_run_id": run_id,
            "mlflow_tracking_uri": tracking_uri,
            "in_memory_shards": small,
            "placement_group_path": str(placement_group_path) if placement_group_path else None,
            # a Tune trial: the actor whose death (ASHA stopped it) orphans the workers' group
            "owner_actor_id": ray.get_runtime_context().get_actor_id(),
        }
    )

    trainer = trainer_class()(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=scaling_config(config),
        torch_config=torch_config(config),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            # controller_failure_limit: fail instead of retrying forever (Train V2; mypy sees V1 stubs)
            failure_config=FailureConfig(  # type: ignore[call-arg]
                max_failures=training.max_failures, controller_failure_limit=3
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            # Ray Train logs every report and checkpoint at INFO; rank 0 prints one line per epoch instead
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=[], execution_options=ordered_execution()),
    )
    say(
        f"training {run_name}: {training.num_workers} worker(s), {training.epochs} epochs max, "
        f"MLflow run {run_id}"
    )
    try:
        result = trainer.fit()
    except Exception as e:  # TrainingFailedError and its causes
        if placement_group_path is not None:
            release_placement_group(placement_group_path)
        client.set_terminated(run_id, status="FAILED")
        raise TrainingError(
            f"training run {run_name} failed after {training.max_failures} allowed failure(s): {e}. "
            f"Worker logs are under the Ray session folder; the MLflow run {run_id} has the epochs that "
            "finished. Re-run with the same run_name to resume from the last checkpoint."
        ) from e
    if result.checkpoint is None:
        client.set_terminated(run_id, status="FAILED")
        raise TrainingError(f"training run {run_name} finished without a checkpoint; nothing to register")
    trained = result_from_checkpoint(
        run_id=run_id,
        run_name=run_name,
        checkpoint_path=checkpoint_uri(result.checkpoint),
        prepared=prepared,
        hyperparameters=hyperparameters,
    )
    for key, value in trained.metrics.items():
        client.log_metric(run_id, f"best_{key}", float(value))
    client.set_tag(run_id, "raymlops.num_attempts", str(trained.num_attempts))
    client.set_tag(run_id, "ray.train.checkpoint_path", trained.checkpoint_path)
    client.set_terminated(run_id, status="FINISHED")
    best = trained.metrics
    say(
        f"best epoch {int(best['epoch'])}: val_loss {best['val_loss']:.4f}"
        + (f", val_accuracy {best['val_accuracy']:.4f}" if "val_accuracy" in best else "")
    )
    return trained


# loop-config keys that say where this run writes, not how it trains (kept out of the hyperparameters)
_RUN_KEYS = (
    "mlflow_run_id",
    "mlflow_tracking_uri",
    "in_memory_shards",
    "placement_group_path",
    "owner_actor_id",
)


# the settings a checkpoint depends on; a changed gate, endpoint or monitor does not matter to it
_CHECKPOINT_SETTINGS = ("data.", "model.", "preprocessing.", "split.", "training.", "override.")


def _check_same_params(client: Any, run_id: str, run_name: str, params: dict[str, str]) -> None:
    """Refuse to resume a run under other training settings: its checkpoints belong to the old ones.

    Parameters the interrupted driver had not logged yet are logged now (MLflow
    never overwrites one, so only the missing ones can be).
    """
    from raymlops._internal import tracking

    logged = client.get_run(run_id).data.params
    missing = {k: v for k, v in params.items() if k not in logged}
    changed = sorted(
        k
        for k in params.keys() & logged.keys()
        if params[k] != logged[k] and k.startswith(_CHECKPOINT_SETTINGS)
    )
    if changed:
        shown = ", ".join(f"{k}: {logged[k]!r} -> {params[k]!r}" for k in changed[:5])
        raise TrainingError(
            f"training run {run_name} was interrupted and would resume from its last checkpoint, "
            f"but {len(changed)} training setting(s) changed since ({shown}); "
            "restore them or start under a new run name"
        )
    if missing:
        tracking.log_params(client, run_id, missing)


def _unfinished_run(client: Any, experiment_id: str, run_name: str) -> str | None:
    """The MLflow run of an interrupted Ray Train run of this name (a killed driver), if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`ray.train.run_name` = '{run_name}' and attributes.status != 'FINISHED'",
        max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None


def _loop_config(config: ProjectConfig, prepared: PreparedData, overrides: dict[str, Any]) -> dict[str, Any]:
    """The one place a dict is built for the Ray boundary, from the config model."""
    model, training = config.model, config.training
    values: dict[str, Any] = {
        "task": model.task,
        "input_dim": prepared.feature_dim,
        "output_dim": output_dim_for(config, prepared.label_classes),
        "hidden_sizes": list(model.hidden_sizes),
        "dropout": model.dropout,
        "factory": model.factory,
        "epochs": training.epochs,
        "batch_size": training.batch_size,
        "learning_rate": training.learning_rate,
        "weight_decay": training.weight_decay,
        "early_stopping_patience": training.early_stopping_patience,
        "seed": training.seed,
        "use_gpu": training.use_gpu,
    }
    for key, value in overrides.items():
        if key not in values:
            raise ConfigError(
                [(f"overrides.{key}", f"not a training hyperparameter; known: {sorted(values)}")]
            )
        values[key] = list(value) if isinstance(value, tuple) else value
    return values
