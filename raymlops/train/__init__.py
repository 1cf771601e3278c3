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

Modules: ``_driver`` (``run``: the MLflow run, the trainer, the result),
``_worker`` (the loop each worker runs), ``_inputs`` (shards of the prepared
splits), ``_model`` (the network, its loss), ``_resources`` (workers, resources,
placement groups), ``_result`` (``TrainResult`` and checkpoints).
"""

from raymlops.train._driver import Progress, run
from raymlops.train._inputs import model_inputs
from raymlops.train._model import build_model, output_dim_for
from raymlops.train._resources import (
    check_resources,
    embedded_ray,
    placement_group_record,
    release_placement_group,
    remove_group,
    scaling_config,
    torch_config,
    trainer_class,
)
from raymlops.train._result import (
    TrainResult,
    checkpoint_state,
    checkpoint_uri,
    load_weights,
    result_from_checkpoint,
)

__all__ = [
    "Progress",
    "TrainResult",
    "build_model",
    "check_resources",
    "checkpoint_state",
    "checkpoint_uri",
    "embedded_ray",
    "load_weights",
    "model_inputs",
    "output_dim_for",
    "placement_group_record",
    "release_placement_group",
    "remove_group",
    "result_from_checkpoint",
    "run",
    "scaling_config",
    "torch_config",
    "trainer_class",
]
