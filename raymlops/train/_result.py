"""What a training run leaves: ``TrainResult`` and the checkpoint it can be rebuilt from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.data import PreparedData
from raymlops.train._model import build_model

if TYPE_CHECKING:
    import torch

STATE_FILE = "state.pt"


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


def checkpoint_state(checkpoint_uri: str) -> dict[str, Any]:
    """The training state saved in a checkpoint: epoch, history, best metrics and weights, attempts.

    ``checkpoint_uri`` is wherever Ray Train put it (``storage_path`` may be a
    bucket, and rank 0 may have run on another node): ``Checkpoint.as_directory``
    downloads it when it is not on this machine.
    """
    import ray.train
    import torch

    with ray.train.Checkpoint(checkpoint_uri).as_directory() as folder:
        blob = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
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
