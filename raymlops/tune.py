"""Sweeps: Ray Tune over the same training run, ASHA early stopping → ``TuneResult``.

Each trial is a function trainable that calls ``train.run`` with the trial's
hyperparameters, so a trial is a full Ray Train run (workers, checkpoints,
resume) and an MLflow child run of the sweep's parent run. Tune's
``TuneReportCallback`` forwards every epoch to the scheduler, so ASHA can stop
a poor trial after ``grace_period`` epochs. The best trial comes back as a
``TrainResult``, ready for ``registry.register``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from raymlops.config import ProjectConfig, SearchDimension
from raymlops.data import PreparedData
from raymlops.errors import TrainingError
from raymlops.train import TrainResult

__all__ = ["TrialSummary", "TuneResult", "run", "search_space"]

Progress = Callable[[str], None]
TRIAL_CPUS = 0.1  # the trainable only waits on its Ray Train controller


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    """One trial as the sweep saw it."""

    run_id: str
    hyperparameters: dict[str, Any]
    epochs_run: int
    best_val_loss: float
    status: str  # FINISHED, or STOPPED when ASHA stopped it early, FAILED


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """A finished sweep: its parent MLflow run, every trial, and the best one as a ``TrainResult``."""

    parent_run_id: str
    best: TrainResult
    trials: tuple[TrialSummary, ...]

    @property
    def num_stopped_early(self) -> int:
        return sum(1 for t in self.trials if t.status == "STOPPED")


def search_space(space: dict[str, SearchDimension]) -> dict[str, Any]:
    """The config's search space as Ray Tune sampling objects."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, dim in space.items():
        if dim.type in ("choice", "grid"):
            values = [list(v) if isinstance(v, (list, tuple)) else v for v in dim.values or ()]
            # grid: every value, in order, once per sample; choice: one value drawn per trial
            out[key] = tune.grid_search(values) if dim.type == "grid" else tune.choice(values)
            continue
        low, high = float(dim.low or 0.0), float(dim.high or 0.0)  # both set: checked by the config
        if dim.type == "uniform":
            out[key] = tune.uniform(low, high)
        elif dim.type == "loguniform":
            out[key] = tune.loguniform(low, high)
        else:
            out[key] = tune.randint(int(low), int(high))
    return out


def run(prepared: PreparedData, config: ProjectConfig, *, progress: Progress | None = None) -> TuneResult:
    """Run the sweep declared in ``config.tuning`` and return its best trial.

    Raises:
        TrainingError: every trial failed.

    Example:
        >>> sweep = run(data.prepare(version, cfg), cfg)  # doctest: +SKIP
        >>> sweep.best.metrics["val_loss"], sweep.num_stopped_early  # doctest: +SKIP
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from raymlops import runtime, train
    from raymlops._internal import tracking

    say = progress or (lambda _m: None)
    tuning = config.tuning
    train.check_resources(config, ray.cluster_resources())
    client = runtime.mlflow_client(config)
    sweep_name = f"{config.name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    parent = client.create_run(
        tracking.experiment_id(config, client),
        run_name=sweep_name,
        tags={
            "raymlops.stage": "tune",
            "raymlops.model_name": config.name,
            "data.digest": prepared.dataset_version.digest,
            **tracking.environment_tags(),
        },
    )
    parent_id = parent.info.run_id
    tracking.log_params(
        client,
        parent_id,
        {
            **{
                f"tuning.{k}": json.dumps(v)
                for k, v in tuning.model_dump(mode="json").items()
                if k != "search_space"
            },
            **{
                f"search_space.{k}": json.dumps(v.model_dump(mode="json"))
                for k, v in tuning.search_space.items()
            },
        },
    )
    trainable = tune.with_resources(
        functools.partial(
            _trial, prepared=prepared, config=config, parent_run_id=parent_id, sweep_name=sweep_name
        ),
        {"cpu": TRIAL_CPUS},
    )
    groups = _trial_groups(config, sweep_name)
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        # ASHA stops a trial once it reaches max_t; one past the last epoch lets a complete
        # trial return normally (and record its checkpoint) instead of being killed at the end.
        max_t=config.training.epochs + 1,
        grace_period=tuning.grace_period,
        reduction_factor=tuning.reduction_factor,
    )
    # Tune's newer output engine prints an experiment box and result paths even at verbose=0;
    # the classic reporter is silent at 0, and our own line per trial replaces both
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(tuning.search_space),
        tune_config=tune.TuneConfig(
            metric=tuning.metric,
            mode=tuning.mode,
            scheduler=scheduler,
            num_samples=tuning.num_samples,
            max_concurrent_trials=tuning.max_concurrent_trials,
            time_budget_s=tuning.time_budget_s,
            reuse_actors=False,  # a trial's end is its actor's death (see _trial_groups)
        ),
        run_config=tune.RunConfig(
            name=sweep_name,
            storage_path=config.locations.tune_uri,
            verbose=0,
            callbacks=[groups],
        ),
    )
    say(
        f"sweep {sweep_name}: {tuning.num_samples} trials, {tuning.max_concurrent_trials} at a time, "
        f"ASHA on {tuning.metric} ({tuning.mode}); MLflow parent run {parent_id}"
    )
    try:
        grid = tuner.fit()
    finally:
        groups.release_all()
    # Tune's own verdict: trials that raised. Any other trial that did not finish was stopped
    # by ASHA, even when its train.run saw the stop as an error and marked its run FAILED.
    results = [grid[i] for i in range(len(grid))]
    errored = {(r.metrics or {}).get("trial_id") for r in results if r.error is not None}
    trials = _trials(client, parent_id, sweep_name, config.training.epochs, errored)
    for t in trials:
        say(
            f"  trial {t.run_id[:8]} {t.status.lower():8s} after {t.epochs_run} epoch(s): "
            f"best val_loss {t.best_val_loss:.4f} {t.hyperparameters}"
        )
    # only finished trials reported their final checkpoint (a stopped trial never got that far)
    finished = [t for t in trials if t.status == "FINISHED" and math.isfinite(t.best_val_loss)]
    if not finished:
        client.set_terminated(parent_id, status="FAILED")
        raise TrainingError(
            f"every trial of sweep {sweep_name} failed; see the MLflow runs under {parent_id}"
        )
    sign = 1.0 if tuning.mode == "min" else -1.0
    best_trial = min(finished, key=lambda t: sign * t.best_val_loss)
    best = _train_result(client, best_trial, prepared)
    client.log_metric(parent_id, "best_val_loss", best_trial.best_val_loss)
    client.set_tag(parent_id, "raymlops.best_run_id", best_trial.run_id)
    client.set_terminated(parent_id, status="FINISHED")
    stopped = sum(1 for t in trials if t.status == "STOPPED")
    say(
        f"best trial {best_trial.run_id}: val_loss {best_trial.best_val_loss:.4f}; "
        f"{stopped} of {len(trials)} trial(s) stopped early by ASHA"
    )
    return TuneResult(parent_run_id=parent_id, best=best, trials=tuple(trials))


def _trial(
    trial_config: dict[str, Any],
    prepared: PreparedData,
    config: ProjectConfig,
    parent_run_id: str,
    sweep_name: str,
) -> None:
    """One Tune trial: a full ``train.run`` whose epochs reach Tune through the report callback."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from raymlops import train

    trial_id = tune.get_context().get_trial_id()
    train.run(
        prepared,
        config,
        overrides=trial_config,
        run_name=_trial_run_name(sweep_name, trial_id),
        parent_run_id=parent_run_id,
        callbacks=[TuneReportCallback()],
    )


def _trial_run_name(sweep_name: str, trial_id: str) -> str:
    """A trial's Ray Train run name: its checkpoints, placement-group record and MLflow tag use it."""
    return f"{sweep_name}-{trial_id}"


def _trial_groups(config: ProjectConfig, sweep_name: str) -> Any:
    """A Tune callback that frees the workers' placement group of every ended trial once its actor is dead.

    When ASHA stops a trial, Tune kills the trial's actor and with it the
    trial's Ray Train controller, which then never removes its workers'
    placement group; the group would hold its CPUs until the sweep's driver
    exits (see ``train.trainer_class``). The callback runs on the driver,
    which outlives every trial: each ended trial is noted, and at every step of
    the sweep the groups of ended trials whose actor is gone are removed.
    ``release_all`` does the last ones after the sweep.
    """
    import ray
    from ray.tune import Callback

    from raymlops import train

    class TrialGroups(Callback):
        def __init__(self) -> None:
            self.ended: set[str] = set()
            self.before = set(ray.util.placement_group_table())  # built just before the sweep

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.ended.add(trial.trial_id)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.ended.add(trial.trial_id)

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            self.release()

        def release(self, *, wait_for_owner: bool = True) -> None:
            for trial_id in list(self.ended):
                record = train.placement_group_record(config, _trial_run_name(sweep_name, trial_id))
                if train.release_placement_group(record, wait_for_owner=wait_for_owner):
                    self.ended.discard(trial_id)

        def release_all(self, timeout_s: float = 30.0) -> None:
            """After the sweep: wait for the trials' actors to exit, then remove what is left anyway.

            No trial runs once ``Tuner.fit`` returned; an actor still alive after
            ``timeout_s`` is only slow to exit (a loaded machine), and its group
            would otherwise hold its CPUs until the driver ends. What is left is
            every group of this job created during the sweep and still placed,
            the recorded ones and those of a trial stopped before its rank 0
            recorded its group. A group's id ends with its job's id: other
            drivers' groups are untouched.
            """
            deadline = time.monotonic() + timeout_s
            self.release()
            while self.ended and time.monotonic() < deadline:
                time.sleep(0.2)
                self.release()
            job = ray.get_runtime_context().get_job_id()
            for group_id, entry in ray.util.placement_group_table().items():
                if group_id in self.before or not group_id.endswith(job) or entry.get("state") == "REMOVED":
                    continue
                train.remove_group(group_id, "left by a trial of the sweep")
            self.ended.clear()

    return TrialGroups()


def _trials(
    client: Any, parent_id: str, sweep_name: str, max_epochs: int, errored: set[Any]
) -> list[TrialSummary]:
    """Read every child run back from MLflow; mark the ones ASHA stopped as STOPPED (MLflow: KILLED)."""
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
    )
    trials = []
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_loss")
        epochs = len({m.step for m in history})
        best = min((m.value for m in history), default=math.inf)
        status = child.info.status
        trial_id = child.data.tags.get("ray.train.run_name", "").removeprefix(_trial_run_name(sweep_name, ""))
        if status in ("RUNNING", "FAILED") and trial_id not in errored and epochs > 0:
            status = "STOPPED"  # ASHA stopped the trial actor while its training run was live
            client.set_tag(child.info.run_id, "raymlops.stopped_by", "asha")
            client.log_metric(child.info.run_id, "best_val_loss", best)
            client.set_terminated(child.info.run_id, status="KILLED")
        hp = json.loads(child.data.tags.get("raymlops.hyperparameters", "{}"))
        overrides = {
            k[len("override.") :]: json.loads(v)
            for k, v in child.data.params.items()
            if k.startswith("override.")
        }
        trials.append(TrialSummary(child.info.run_id, overrides or hp, epochs, best, status))
    return sorted(trials, key=lambda t: t.best_val_loss)


def _train_result(client: Any, trial: TrialSummary, prepared: PreparedData) -> TrainResult:
    """Rebuild the best trial's ``TrainResult`` from its MLflow record and checkpoint."""
    from raymlops import train

    run = client.get_run(trial.run_id)
    checkpoint_path = run.data.tags.get("ray.train.checkpoint_path")
    if not checkpoint_path:
        raise TrainingError(f"the best trial's run {trial.run_id} recorded no checkpoint")
    return train.result_from_checkpoint(
        run_id=trial.run_id,
        run_name=run.data.tags.get("ray.train.run_name", ""),
        checkpoint_path=checkpoint_path,
        prepared=prepared,
        hyperparameters=json.loads(run.data.tags["raymlops.hyperparameters"]),
    )
