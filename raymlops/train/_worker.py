"""The loop each Ray Train worker runs: epochs, validation, checkpoints, early stopping, MLflow per epoch."""

from __future__ import annotations

import functools
import logging
import math
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raymlops._internal.chatter import progress
from raymlops.train._inputs import shard_name
from raymlops.train._model import build_model, forward, make_loss, unwrap
from raymlops.train._resources import record_placement_group
from raymlops.train._result import STATE_FILE

if TYPE_CHECKING:
    import torch

_LOG = logging.getLogger("raymlops.train")


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_loop(cfg: dict[str, Any]) -> None:
    """Runs on every Ray Train worker; rank 0 writes the checkpoints and the MLflow epochs."""
    import ray.train
    import ray.train.torch
    import torch

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    _quiet_train_reports()
    if rank == 0 and cfg.get("placement_group_path"):
        record_placement_group(cfg["placement_group_path"], cfg.get("owner_actor_id"))
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
    loss_fn = make_loss(cfg["task"])
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
            saved = torch.load(Path(folder) / STATE_FILE, map_location=device, weights_only=False)
        unwrap(model).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        state["num_attempts"] += 1
        if rank == 0:
            _mlflow_resumed(cfg, state)

    train_shard = ray.train.get_dataset_shard(shard_name("train", rank))
    val_shard = ray.train.get_dataset_shard(shard_name("validation", rank))
    in_memory = _shard_tensors(train_shard) if cfg["in_memory_shards"] else None
    for epoch in range(state["epoch"] + 1, cfg["epochs"]):
        _seed(cfg["seed"] * 7919 + epoch * 131 + rank)  # dropout: same per (epoch, rank) on every run
        model.train()
        total, count = 0.0, 0
        started = time.perf_counter()
        for batch in _train_batches(train_shard, cfg, epoch, rank, device, in_memory):
            optimizer.zero_grad()
            loss = loss_fn(forward(model, batch["x"], cfg["task"]), batch["y"])
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
            state["best_model"] = {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}
        else:
            state["bad_epochs"] += 1
        patience = cfg["early_stopping_patience"]
        stop = patience > 0 and state["bad_epochs"] >= patience
        if rank == 0:
            _mlflow_epoch(cfg, {**metrics, "epoch_train_s": train_s})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch")
            _LOG.info("%s", progress(f"epoch {epoch + 1}/{cfg['epochs']}: {shown}"))
            with tempfile.TemporaryDirectory() as folder:
                blob = {
                    "model": unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "state": state,
                }
                torch.save(blob, Path(folder) / STATE_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)  # a barrier: every rank reports every epoch
        if stop:
            break


IN_MEMORY_SHARD_BYTES = 256 * 2**20


def _shard_tensors(shard: Any) -> dict[str, torch.Tensor]:
    """A worker's whole training slice as two tensors, read once per fit.

    Used when every slice is small (``IN_MEMORY_SHARD_BYTES``): Ray Data's
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

    loss_fn = make_loss(task)
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0
    with torch.no_grad():
        for batch in shard.iter_torch_batches(batch_size=4096, device=device):
            out = forward(model, batch["x"], task)
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
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    step = int(metrics["epoch"])
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"]
    _mlflow_client(cfg["mlflow_tracking_uri"]).log_batch(cfg["mlflow_run_id"], metrics=items)


def _mlflow_resumed(cfg: dict[str, Any], state: dict[str, Any]) -> None:
    if not cfg.get("mlflow_run_id"):
        return
    client = _mlflow_client(cfg["mlflow_tracking_uri"])
    client.log_metric(
        cfg["mlflow_run_id"], "resumed_from_epoch", float(state["epoch"]), step=state["num_attempts"]
    )
    client.set_tag(cfg["mlflow_run_id"], "raymlops.resumed", "true")


@functools.lru_cache(maxsize=4)
def _mlflow_client(tracking_uri: str) -> Any:
    """One client per worker process and store: a client per epoch rebuilt the store each time."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri)
