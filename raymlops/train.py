"""Training: a Ray Train ``TorchTrainer`` run over one prepared data version → ``TrainResult``.

The worker loop reads its shard of the preprocessed training split, trains an
MLP (or a model plugged in by import path), evaluates the global validation
loss every epoch, and reports metrics with a checkpoint (model, optimizer,
epoch, early-stopping state) every epoch. After a worker dies the run resumes
from the last checkpoint. Rank 0 logs each epoch to the run's MLflow run, so
progress is visible live in the MLflow UI.

Reproducibility: seeds for Python, NumPy and torch; Ray Data runs with
``preserve_order`` so each worker gets the same rows in the same order on every
run; dropout and shuffling are seeded per epoch and rank, so a resumed run
replays exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import math
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raymlops.config import ProjectConfig
from raymlops.data import FEATURES_COLUMN, PreparedData, compile_features
from raymlops.errors import ConfigError, InsufficientResourcesError, TrainingError
from raymlops.runtime import ENV_EMBEDDED

if TYPE_CHECKING:
    import pandas as pd
    import ray.data
    import torch

_LOG = logging.getLogger("raymlops.train")

__all__ = [
    "TrainResult",
    "build_model",
    "check_resources",
    "checkpoint_state",
    "embedded_ray",
    "load_weights",
    "model_inputs",
    "run",
]

_STATE_FILE = "state.pt"
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """One finished training run.

    Attributes:
        run_id: the MLflow run that holds params, per-epoch metrics and lineage.
        run_name: the Ray Train run name (its folder under ``<home>/train``).
        checkpoint_path: the final checkpoint; its ``best_model`` is the weights to serve.
        metrics: the best epoch's validation metrics (and the epoch it came from).
        history: every epoch's metrics, in order.
        prepared: the data the model was trained on (splits, preprocessor, profile).
        num_attempts: 1 + the number of times the run resumed after a failure.
        hyperparameters: the values the run used (config plus sweep overrides); the
            model is rebuilt from these, not from the config.
    """

    run_id: str
    run_name: str
    checkpoint_path: str
    metrics: dict[str, float]
    history: tuple[dict[str, float], ...]
    prepared: PreparedData
    output_dim: int
    hyperparameters: dict[str, Any]
    num_attempts: int = 1
    stopped_early: bool = False


# --------------------------------------------------------------------------- model


def build_model(
    input_dim: int, output_dim: int, hidden_sizes: tuple[int, ...], dropout: float, factory: str | None = None
) -> torch.nn.Module:
    """The MLP for the task, or the module returned by ``factory`` ("pkg.module:fn").

    A factory is called as ``fn(input_dim=…, output_dim=…, hidden_sizes=…, dropout=…)``.
    """
    import torch

    if factory:
        module_name, _, attr = factory.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                [("model.factory", f"cannot import {factory!r}: {e}; use 'package.module:function'")]
            ) from e
        model = fn(input_dim=input_dim, output_dim=output_dim, hidden_sizes=hidden_sizes, dropout=dropout)
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(
                [("model.factory", f"{factory!r} returned {type(model).__name__}, not a torch Module")]
            )
        return model
    layers: list[torch.nn.Module] = []
    width = input_dim
    for size in hidden_sizes:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = size
    layers.append(torch.nn.Linear(width, output_dim))
    return torch.nn.Sequential(*layers)


def output_dim_for(config: ProjectConfig, label_classes: tuple[Any, ...] | None) -> int:
    if config.model.task == "multiclass":
        return len(label_classes or ())
    return 1


def checkpoint_state(checkpoint_uri: str) -> dict[str, Any]:
    """The training state saved in a checkpoint: epoch, history, best metrics and weights, attempts.

    ``checkpoint_uri`` is wherever Ray Train put it (``storage_path`` may be a
    bucket, and rank 0 may have run on another node): ``Checkpoint.as_directory``
    downloads it when it is not on this machine.
    """
    import ray.train
    import torch

    with ray.train.Checkpoint(checkpoint_uri).as_directory() as folder:
        blob = torch.load(Path(folder) / _STATE_FILE, map_location="cpu", weights_only=False)
    state: dict[str, Any] = blob["state"]
    return state


def checkpoint_uri(checkpoint: Any) -> str:
    """A ``ray.train.Checkpoint``'s location as one string another process can open (a URI or a path)."""
    kind = checkpoint.filesystem.type_name if checkpoint.filesystem is not None else "local"
    scheme = {"s3": "s3", "gcs": "gs", "abfs": "abfss"}.get(kind)
    return f"{scheme}://{checkpoint.path}" if scheme else str(checkpoint.path)


def load_weights(result: TrainResult) -> torch.nn.Module:
    """The best weights of a finished run as an eval-mode module on the CPU."""
    state = checkpoint_state(result.checkpoint_path)
    hp = result.hyperparameters
    model = build_model(
        result.prepared.feature_dim,
        result.output_dim,
        tuple(hp["hidden_sizes"]),
        hp["dropout"],
        hp["factory"],
    )
    model.load_state_dict(state["best_model"])
    return model.eval()


# --------------------------------------------------------------------------- data


def model_inputs(ds: ray.data.Dataset, prepared: PreparedData, task: str) -> ray.data.Dataset:
    """Raw rows → ``{"x": float32 features, "y": target}`` with the fitted preprocessor.

    Through the preprocessor compiled to NumPy when it knows every step (the
    same features bit for bit, without Ray's pandas/Arrow round trip per step:
    70k rows took 5.7 s of a fit's start that way), else through Ray's ``transform``.
    """
    encode = functools.partial(
        _encode_batch, label_column=prepared.label_column, classes=prepared.label_classes, task=task
    )
    features = compile_features(prepared.preprocessor)
    if features is None:
        return prepared.preprocessor.transform(ds).map_batches(encode, batch_format="numpy")
    compiled = functools.partial(
        _encode_frame, features=features, label_column=prepared.label_column, encode=encode
    )
    return ds.map_batches(compiled, batch_format="pandas")


def _encode_frame(
    frame: pd.DataFrame,
    features: Callable[[pd.DataFrame], np.ndarray],
    label_column: str,
    encode: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    return encode({FEATURES_COLUMN: features(frame), label_column: frame[label_column].to_numpy()})


def _encode_batch(
    batch: dict[str, np.ndarray], label_column: str, classes: tuple[Any, ...] | None, task: str
) -> dict[str, np.ndarray]:
    features = batch[FEATURES_COLUMN]
    if features.dtype == object:  # one array per row rather than a 2-D tensor column
        features = np.stack(list(features))
    x = np.asarray(features, dtype=np.float32)
    labels = batch[label_column]
    if task == "regression":
        y = np.asarray(labels, dtype=np.float32)
    else:
        index = {c: i for i, c in enumerate(classes or ())}
        y = np.array([index[v.item() if hasattr(v, "item") else v] for v in labels], dtype=np.int64)
        if task == "binary":
            y = y.astype(np.float32)
    return {"x": x, "y": y}


# --------------------------------------------------------------------------- driver


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
    import mlflow
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig

    from raymlops import runtime
    from raymlops._internal import tracking

    say = progress or (lambda _m: None)
    training = config.training
    check_resources(config, ray.cluster_resources())
    loop_config = _loop_config(config, prepared, overrides or {})
    tracking_uri = runtime.configure_mlflow(config)
    run_name = run_name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    storage_path = config.locations.train_uri

    experiment_id = tracking.experiment_id(config)
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
    client = mlflow.MlflowClient(tracking_uri)
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
    datasets = _worker_shards(prepared, config.model.task, training.num_workers)
    small = all(ds.size_bytes() <= _IN_MEMORY_SHARD_BYTES for ds in datasets.values())
    # on an embedded head rank 0 records its placement group here (see _trainer_class)
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

    trainer = _trainer_class()(
        _train_loop,
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
        dataset_config=DataConfig(datasets_to_split=[], execution_options=_ordered_execution()),
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
_PLACEMENT_GROUP_FILE = "raymlops_placement_group"


def embedded_ray() -> bool:
    """True on an embedded one-node Ray that raymlops started (``runtime.local_ray_env``).

    Set in the environment before the head starts, so the driver, Tune trials
    and jobs submitted to that head all see it; a cluster of its own (``ray
    start``, KubeRay) does not, and keeps Ray Train's defaults.
    """
    return os.environ.get(ENV_EMBEDDED) == "1"


def _trainer_class() -> Any:
    """``TorchTrainer``; on an embedded Ray, without its placement-group cleaner actor.

    Ray Train 2.60 starts a detached cleaner actor per fit that removes the
    workers' placement group if the controller dies without doing so (a
    placement group made by an actor lives as long as its job, not as long as
    the actor). On one node it costs one more process to start beside the
    workers and a 1 s stop (``benchmarks/README.md``), and it learns of the
    controller's death through the state API, so on a head without a dashboard
    it never removes anything. Its job is done here instead by rank 0 recording
    its placement group and the process that owns the fit in the run folder:
    ``run`` removes it after a failed fit, and a sweep removes it once the
    trial that ASHA stopped is dead (``release_placement_group``).
    """
    from ray.train.torch import TorchTrainer

    if not embedded_ray():
        return TorchTrainer
    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import (
            PlacementGroupCleanerCallback,
        )
    except ImportError:  # another Ray version: keep its cleaner
        return TorchTrainer

    class OneNodeTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self) -> list[Any]:
            callbacks: list[Any] = super()._create_default_callbacks()  # type: ignore[misc]
            return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]

    return OneNodeTorchTrainer


def placement_group_record(config: ProjectConfig, run_name: str) -> Path:
    """Where rank 0 of an embedded-head fit records its placement group (and the fit's owner)."""
    return config.home_path / "train" / run_name / _PLACEMENT_GROUP_FILE


def _record_placement_group(path: str, owner_actor_id: str | None) -> None:
    """Rank 0 writes its worker group's placement group id, then the owner actor's id if any."""
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    if group is not None:
        from raymlops._internal.files import replace_text

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        lines = [group.id.hex(), *([owner_actor_id] if owner_actor_id else [])]
        replace_text(Path(path), "\n".join(lines))  # ``run`` and tests poll for it: never seen empty


def release_placement_group(record: Path, *, wait_for_owner: bool = False) -> bool:
    """Remove a fit's placement group that outlived its controller; True once nothing is left to do.

    Ray Train removes the group itself whenever its controller shuts down; a
    controller that died (killed, or killed with the Tune trial that owned it)
    leaves it holding its CPUs until the job ends, which starves every later
    fit, trial and retrain job on the embedded head. With ``wait_for_owner``,
    a group whose owner actor (a Tune trial) is still alive is left alone and
    False is returned: removing it under a live controller would only make it
    start a new worker group.
    """
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:
        group_id, *owner = record.read_text().split()
    except (OSError, ValueError):
        return True  # no worker group started
    entry = ray.util.placement_group_table().get(group_id)
    if not entry or entry.get("state") == "REMOVED":
        return True
    if wait_for_owner and owner and _actor_alive(owner[0]):
        return False
    remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(group_id)))
    _LOG.warning("removed placement group %s, left behind by a fit whose controller died", group_id)
    return True


def _actor_alive(actor_id: str) -> bool:
    """Whether an actor is alive, read from the GCS (the state API needs a dashboard)."""
    from ray._private import state

    info = state.actors(actor_id)
    return bool(info) and info.get("State") != "DEAD"


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


def result_from_checkpoint(
    *,
    run_id: str,
    run_name: str,
    checkpoint_path: str,
    prepared: PreparedData,
    hyperparameters: dict[str, Any],
) -> TrainResult:
    """A ``TrainResult`` rebuilt from a run's last checkpoint.

    The checkpoint holds the whole training state (history, best metrics and
    weights, attempts), so a finished run and a sweep's best trial are rebuilt
    the same way, without relying on what the worker function returned.
    """
    state = checkpoint_state(checkpoint_path)
    history = tuple(state["history"])
    return TrainResult(
        run_id=run_id,
        run_name=run_name,
        checkpoint_path=checkpoint_path,
        metrics=dict(state["best_metrics"]),
        history=history,
        prepared=prepared,
        output_dim=int(hyperparameters["output_dim"]),
        hyperparameters=hyperparameters,
        num_attempts=int(state["num_attempts"]),
        stopped_early=len(history) < int(hyperparameters["epochs"]),
    )


def scaling_config(config: ProjectConfig) -> Any:
    """Workers and what each holds: ``cpus_per_worker`` CPUs, one GPU each with ``use_gpu``."""
    from ray.train import ScalingConfig

    training = config.training
    resources = {"CPU": training.cpus_per_worker, **training.resources_per_worker}
    if training.use_gpu:
        resources["GPU"] = 1
    return ScalingConfig(
        num_workers=training.num_workers, use_gpu=training.use_gpu, resources_per_worker=resources
    )


def torch_config(config: ProjectConfig) -> Any:
    """nccl between GPU workers, gloo between CPU workers (stated, not left to a default)."""
    from ray.train.torch import TorchConfig

    return TorchConfig(backend="nccl" if config.training.use_gpu else "gloo")


def check_resources(config: ProjectConfig, cluster: dict[str, float]) -> None:
    """Refuse, before starting anything, a run the cluster cannot hold (Ray would wait forever)."""
    training = config.training
    if training.use_gpu and cluster.get("GPU", 0) < training.num_workers:
        raise InsufficientResourcesError(
            f"training.use_gpu is true and training.num_workers is {training.num_workers}, so the run "
            f"needs {training.num_workers} GPU(s), but the cluster has {cluster.get('GPU', 0):g}. "
            "Set training.use_gpu: false to train on CPUs, lower num_workers, or attach to a cluster "
            "with GPUs (RAY_ADDRESS)."
        )
    need_cpu = training.num_workers * training.cpus_per_worker
    if need_cpu > cluster.get("CPU", 0):
        raise InsufficientResourcesError(
            f"training needs {need_cpu:g} CPUs (num_workers {training.num_workers} x cpus_per_worker "
            f"{training.cpus_per_worker:g}) but the cluster has {cluster.get('CPU', 0):g}. Lower "
            "training.cpus_per_worker or num_workers, or raise runtime.num_cpus."
        )
    for name, amount in training.resources_per_worker.items():
        if name != "CPU" and cluster.get(name, 0) < amount * training.num_workers:
            raise InsufficientResourcesError(
                f"training.resources_per_worker asks for {amount:g} {name} per worker but the cluster "
                f"has {cluster.get(name, 0):g} in total"
            )


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


def _worker_shards(prepared: PreparedData, task: str, num_workers: int) -> dict[str, Any]:
    """Each worker's own slice of the encoded train and validation rows, split here on the driver.

    The rows are encoded once, on the driver's warm Ray Data workers, so every
    epoch reads finished blocks instead of re-running the preprocessor in fresh
    worker processes. Splitting the finished blocks here (equal row counts, so
    every rank runs the same number of steps) replaces Ray Train's streaming
    split, whose coordinator actor (one more process, and ~4 s before the first
    batch on 2 cores) only pays off for data that does not fit in memory;
    these rows are materialised already.
    """
    shards: dict[str, Any] = {}  # TorchTrainer's ``datasets``
    for split_name, rows in (("train", prepared.train), ("validation", prepared.validation)):
        encoded = _materialize_in_order(model_inputs(rows, prepared, task))
        parts = encoded.split(num_workers, equal=True) if num_workers > 1 else [encoded]
        shards.update({_shard_name(split_name, rank): part for rank, part in enumerate(parts)})
    return shards


def _shard_name(split_name: str, rank: int) -> str:
    return f"{split_name}_rank{rank}"


def _materialize_in_order(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Execute now, keeping block order, so two runs see the same rows in the same order."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        return ds.materialize()
    finally:
        ctx.execution_options.preserve_order = before


def _ordered_execution() -> Any:
    from ray.data import ExecutionOptions

    options = ExecutionOptions()
    options.preserve_order = True  # deterministic shards: the splitter drops locality hints
    return options


# --------------------------------------------------------------------------- worker loop


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _train_loop(cfg: dict[str, Any]) -> None:
    """Runs on every Ray Train worker; rank 0 writes the checkpoints and the MLflow epochs."""
    import ray.train
    import ray.train.torch
    import torch

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    _quiet_train_reports()
    if rank == 0 and cfg.get("placement_group_path"):
        _record_placement_group(cfg["placement_group_path"], cfg.get("owner_actor_id"))
    if cfg["use_gpu"]:
        # On CPU the layers' kernels are deterministic already, and the switch imports
        # torch's compiler stack (1.9 s per worker); CUDA needs it for repeatable runs.
        torch.use_deterministic_algorithms(True, warn_only=True)
    _seed(cfg["seed"])  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
    model = build_model(
        cfg["input_dim"], cfg["output_dim"], tuple(cfg["hidden_sizes"]), cfg["dropout"], cfg["factory"]
    )
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"]
    )
    loss_fn = _loss(cfg["task"])
    state: dict[str, Any] = {
        "epoch": -1,
        "best_val_loss": math.inf,
        "bad_epochs": 0,
        "history": [],
        "best_metrics": {},
        "best_model": None,
        "num_attempts": 1,
    }
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / _STATE_FILE, map_location=device, weights_only=False)
        _unwrap(model).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        state["num_attempts"] += 1
        if rank == 0:
            _mlflow_resumed(cfg, state)

    train_shard = ray.train.get_dataset_shard(_shard_name("train", rank))
    val_shard = ray.train.get_dataset_shard(_shard_name("validation", rank))
    in_memory = _shard_tensors(train_shard) if cfg["in_memory_shards"] else None
    for epoch in range(state["epoch"] + 1, cfg["epochs"]):
        _seed(cfg["seed"] * 7919 + epoch * 131 + rank)  # dropout: same per (epoch, rank) on every run
        model.train()
        total, count = 0.0, 0
        started = time.perf_counter()
        for batch in _train_batches(train_shard, cfg, epoch, rank, device, in_memory):
            optimizer.zero_grad()
            loss = loss_fn(_forward(model, batch["x"], cfg["task"]), batch["y"])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch["y"])
            count += len(batch["y"])
        train_loss = _global_sum(total, world_size, device) / max(_global_sum(count, world_size, device), 1)
        train_s = time.perf_counter() - started  # MLflow only: a time in the history would differ per run
        validation = _evaluate(model, val_shard, cfg["task"], world_size, device)
        metrics = {"epoch": float(epoch), "train_loss": train_loss, **validation}
        state["history"].append(metrics)
        state["epoch"] = epoch
        if metrics["val_loss"] < state["best_val_loss"]:
            state.update(best_val_loss=metrics["val_loss"], bad_epochs=0, best_metrics=metrics)
            state["best_model"] = {
                k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()
            }
        else:
            state["bad_epochs"] += 1
        patience = cfg["early_stopping_patience"]
        stop = patience > 0 and state["bad_epochs"] >= patience
        if rank == 0:
            _mlflow_epoch(cfg, {**metrics, "epoch_train_s": train_s})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch")
            _LOG.info("epoch %d/%d: %s", epoch + 1, cfg["epochs"], shown)
            with tempfile.TemporaryDirectory() as folder:
                blob = {
                    "model": _unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "state": state,
                }
                torch.save(blob, Path(folder) / _STATE_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)  # a barrier: every rank reports every epoch
        if stop:
            break


_IN_MEMORY_SHARD_BYTES = 256 * 2**20


def _shard_tensors(shard: Any) -> dict[str, torch.Tensor]:
    """A worker's whole training slice as two tensors, read once per fit.

    Used when every slice is small (``_IN_MEMORY_SHARD_BYTES``): Ray Data's
    batch iterator with a local shuffle buffer cost more than the training step
    itself (``benchmarks/README.md``, ``benchmarks/train_throughput.py``). Larger
    slices keep streaming through Ray Data, epoch by epoch.
    """
    import torch

    parts = list(shard.iter_batches(batch_size=None, batch_format="numpy"))
    if not parts:
        return {"x": torch.zeros((0, 0)), "y": torch.zeros(0)}
    return {key: torch.from_numpy(np.concatenate([p[key] for p in parts])) for key in ("x", "y")}


def _train_batches(
    shard: Any, cfg: dict[str, Any], epoch: int, rank: int, device: Any, rows: dict[str, torch.Tensor] | None
) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch's shuffled batches: from the tensors in memory, else streamed by Ray Data."""
    import torch

    if rows is None:
        yield from shard.iter_torch_batches(
            batch_size=cfg["batch_size"],
            local_shuffle_buffer_size=cfg["batch_size"] * 8,
            local_shuffle_seed=cfg["seed"] + epoch,
            device=device,
        )
        return
    size = cfg["batch_size"]
    generator = torch.Generator().manual_seed(cfg["seed"] + epoch * 131 + rank)
    order = torch.randperm(len(rows["y"]), generator=generator)
    for start in range(0, len(order), size):
        index = order[start : start + size]
        yield {"x": rows["x"][index].to(device), "y": rows["y"][index].to(device)}


def _quiet_train_reports() -> None:
    """Silence Ray Train's INFO line per report and rank (two per epoch, with the whole checkpoint).

    Ray 2.60 logs it through a logger named by the module's file path, which
    ``RunConfig(logging_config=...)`` does not reach; our own line per epoch replaces it.
    """
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:  # a Ray version where the module moved: keep its logging as it is
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    import torch

    inner = getattr(model, "module", model)  # DDP wraps the model
    assert isinstance(inner, torch.nn.Module)
    return inner


def _loss(task: str) -> torch.nn.Module:
    import torch

    if task == "binary":
        return torch.nn.BCEWithLogitsLoss()
    if task == "multiclass":
        return torch.nn.CrossEntropyLoss()
    return torch.nn.MSELoss()


def _forward(model: torch.nn.Module, x: torch.Tensor, task: str) -> torch.Tensor:
    out = model(x)
    return out.squeeze(-1) if task in ("binary", "regression") else out


def _global_sum(value: float, world_size: int, device: Any) -> float:
    if world_size == 1:
        return float(value)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def _evaluate(model: torch.nn.Module, shard: Any, task: str, world: int, device: Any) -> dict[str, float]:
    """Validation loss (and accuracy or RMSE) over every rank's shard, reduced globally."""
    import torch

    loss_fn = _loss(task)
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0
    with torch.no_grad():
        for batch in shard.iter_torch_batches(batch_size=4096, device=device):
            out = _forward(model, batch["x"], task)
            y = batch["y"]
            loss_sum += float(loss_fn(out, y)) * len(y)
            if task == "binary":
                correct += float(((out > 0).float() == y).sum())
            elif task == "multiclass":
                correct += float((out.argmax(dim=1) == y).sum())
            count += len(y)
    total = max(_global_sum(count, world, device), 1)
    metrics = {"val_loss": _global_sum(loss_sum, world, device) / total}
    if task == "regression":
        metrics["val_rmse"] = math.sqrt(metrics["val_loss"])
    else:
        metrics["val_accuracy"] = _global_sum(correct, world, device) / total
    return metrics


def _mlflow_epoch(cfg: dict[str, Any], metrics: dict[str, float]) -> None:
    if not cfg.get("mlflow_run_id"):
        return
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    step = int(metrics["epoch"])
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"]
    mlflow.MlflowClient(cfg["mlflow_tracking_uri"]).log_batch(cfg["mlflow_run_id"], metrics=items)


def _mlflow_resumed(cfg: dict[str, Any], state: dict[str, Any]) -> None:
    if not cfg.get("mlflow_run_id"):
        return
    import mlflow

    client = mlflow.MlflowClient(cfg["mlflow_tracking_uri"])
    client.log_metric(
        cfg["mlflow_run_id"], "resumed_from_epoch", float(state["epoch"]), step=state["num_attempts"]
    )
    client.set_tag(cfg["mlflow_run_id"], "raymlops.resumed", "true")
