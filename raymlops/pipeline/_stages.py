"""The stages composed: train or sweep and register, gate and promote, retrain on production labels.

No printing here: callers pass ``say`` (one line of detail) so the CLI, a Ray
job and a test each report their way.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig
from raymlops.contracts import is_remote, join
from raymlops.data import PreparedData
from raymlops.errors import ConfigError

if TYPE_CHECKING:
    from raymlops.evaluate import GateReport
    from raymlops.registry import AliasMove, ModelVersion
    from raymlops.serve import Endpoint
    from raymlops.train import TrainResult


Step = Callable[[str], AbstractContextManager[object]]
Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class TrainOutcome:
    """A trained, registered model and how it does on the holdout."""

    result: TrainResult
    model_version: ModelVersion
    holdout_accuracy: float | None  # classification only
    majority_baseline: float | None  # accuracy of always predicting the most frequent class

    def summary(self) -> dict[str, object]:
        """The facts a job prints as JSON."""
        return {
            "model": self.model_version.name,
            "model_version": self.model_version.version,
            "run_id": self.result.run_id,
            "num_attempts": self.result.num_attempts,
            "data_version": self.result.prepared.dataset_version.version,
            "data_digest": self.result.prepared.dataset_version.digest,
            "best_metrics": self.result.metrics,
            "holdout_accuracy": self.holdout_accuracy,
            "majority_baseline": self.majority_baseline,
        }

    def render(self) -> str:
        lines = [
            f"{self.model_version.name} version {self.model_version.version}: "
            f"MLflow run {self.result.run_id}, {self.result.num_attempts} attempt(s)",
            f"best epoch {int(self.result.metrics['epoch'])}: val_loss {self.result.metrics['val_loss']:.4f}",
        ]
        if self.holdout_accuracy is not None and self.majority_baseline is not None:
            lines.append(
                f"holdout accuracy {self.holdout_accuracy:.4f} vs majority-class baseline "
                f"{self.majority_baseline:.4f} ({self.holdout_accuracy - self.majority_baseline:+.4f})"
            )
        return "\n".join(lines)


def train_and_register(
    config: ProjectConfig,
    *,
    data_version: int | None = None,
    prepared: PreparedData | None = None,
    run_name: str | None = None,
    say: Say | None = None,
) -> TrainOutcome:
    """Train on a data version (default: the latest) and register the model.

    Pass ``prepared`` when the version is already prepared, ``run_name`` to
    resume an interrupted run of that name from its last checkpoint. Needs a
    running Ray (``runtime.session``).
    """
    from raymlops import train

    say = say or (lambda _m: None)
    prepared = prepared or _prepare(config, data_version, say)
    return _register(config, train.run(prepared, config, run_name=run_name, progress=say), say)


def tune_and_register(
    config: ProjectConfig,
    *,
    data_version: int | None = None,
    prepared: PreparedData | None = None,
    say: Say | None = None,
) -> TrainOutcome:
    """Sweep ``config.tuning`` on a data version and register the best trial."""
    from raymlops import tune

    say = say or (lambda _m: None)
    prepared = prepared or _prepare(config, data_version, say)
    return _register(config, tune.run(prepared, config, progress=say).best, say)


def _prepare(config: ProjectConfig, data_version: int | None, say: Say) -> PreparedData:
    from raymlops import data

    version = data.get_version(config.table_uri, data_version)
    say(f"data version {version.version} ({version.num_rows} rows, digest {version.short_digest})")
    return data.prepare(version, config)


def _register(config: ProjectConfig, result: TrainResult, say: Say) -> TrainOutcome:
    """Register a trained model and measure it on the holdout against the majority class."""
    from raymlops import registry

    model_version = registry.register(result, config, progress=say)
    accuracy = baseline = None
    if config.model.task != "regression":
        prepared = result.prepared
        test = prepared.test.to_pandas()
        predictor = registry.load_predictor(config, f"{model_version.name}/{model_version.version}")
        predicted = predictor.predict_frame(test)["prediction"].to_numpy()
        accuracy = float((predicted == test[prepared.label_column].to_numpy()).mean())
        baseline = float(test[prepared.label_column].value_counts(normalize=True).max())
    return TrainOutcome(result, model_version, accuracy, baseline)


@dataclasses.dataclass(frozen=True)
class PromotionOutcome:
    """The gate's report on a version and the alias moves it led to (none when rejected)."""

    report: GateReport | None  # None for a forced promotion
    moves: tuple[AliasMove, ...]

    @property
    def promoted(self) -> bool:
        return bool(self.moves)


def gate_and_promote(
    config: ProjectConfig,
    ref: str,
    *,
    reason: str,
    force: bool = False,
    data_version: int | None = None,
    say: Say | None = None,
) -> PromotionOutcome:
    """Run the gate on a version against the current champion and promote it if it passes.

    The gate runs every time, so the decision always compares with the champion
    of this moment on the latest holdout. ``force`` skips the gate; the history
    records the promotion as forced, with its reason.
    """
    from raymlops import evaluate, registry

    say = say or (lambda _m: None)
    mv = registry.resolve(config, ref)
    ref = f"{mv.name}/{mv.version}"
    if force:
        return PromotionOutcome(None, registry.promote(config, ref, reason=reason, force=True))
    registry.check_reason(reason, "promote")  # before the gate's work, not after
    report = evaluate.gate(config, ref, data_version=data_version, progress=say)
    if not report.passed:
        return PromotionOutcome(report, ())
    return PromotionOutcome(report, registry.promote(config, ref, reason=reason))


@dataclasses.dataclass(frozen=True)
class RetrainOutcome:
    """What a retrain did: ``promoted``, ``rejected`` (with the gate's reasons), ``rolled_back`` (the
    canary broke a rule), ``inconclusive`` (the canary had too little traffic) or ``skipped``."""

    outcome: str
    detail: str
    num_labelled_rows: int
    labels_through_us: int | None  # the next retrain reads labels after this
    data_version: int | None = None
    model_version: int | None = None
    champion_before: int | None = None
    gate_report_id: str | None = None
    canary: str | None = None  # the judged canary's last verdict, with its figures

    def summary(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def retrain(
    config: ProjectConfig,
    *,
    submission_id: str | None = None,
    labels_after_us: int | None = None,
    say: Say | None = None,
) -> RetrainOutcome:
    """Retrain on the training table plus labelled production rows, gate, and roll out on a pass.

    Steps: join the feedback labels (sent after ``labels_after_us``) to the
    logged predictions → append them to the training table as a new data
    version (validated like any ingest) → train (a sweep when
    ``retraining.sweep``) → the gate against the champion on the new version's
    holdout → on a pass, a judged canary (``canary`` section: promoted, rolled
    back or inconclusive), or a promotion when there is no champion yet; on a fail the gate's
    reasons. With ``submission_id`` (the monitor's retrain job) the outcome is
    also written where the monitor reads it. Needs a running Ray.
    """
    import time

    import pyarrow.parquet as pq

    from raymlops import data, evaluate, monitor, registry

    say = say or (lambda _m: None)
    if submission_id is not None and not _SUBMISSION_ID.fullmatch(submission_id):
        raise ConfigError(
            f"retrain submission id {submission_id!r} names a folder; "
            "use letters, digits, '_', '.' and '-', not starting with '.'"
        )
    tag = submission_id or f"manual-{int(time.time())}"
    folder = config.locations.retrain_uri(tag)
    done = _load_progress(folder)
    if "outcome" in done:  # finished before: report it again (the job's result too), change nothing
        say(f"retrain {tag} already finished")
        return _record_retrain(config, submission_id, RetrainOutcome(**done["outcome"]), say)
    if done:
        say(f"resuming retrain {tag}: {', '.join(f'{k} {v}' for k, v in sorted(done.items()))} already done")
        before = done["champion_before"]
    else:
        champion = registry.champion(config)
        before = champion.version if champion else None
        rows = monitor.labelled_rows(config, labels_after_us=labels_after_us)
        say(f"{rows.table.num_rows} labelled production rows ({rows.num_labels} labels read)")
        minimum = config.retraining.min_labelled_rows
        if rows.table.num_rows < minimum:
            outcome = RetrainOutcome(
                "skipped",
                f"only {rows.table.num_rows} labelled production rows; "
                f"retraining.min_labelled_rows is {minimum}",
                rows.table.num_rows,
                labels_after_us,
                champion_before=before,
            )
            return _record_retrain(config, submission_id, outcome, say)
        labelled_uri = join(folder, "labelled.parquet")
        if not is_remote(labelled_uri):
            Path(folder).mkdir(parents=True, exist_ok=True)
        pq.write_table(rows.table, labelled_uri)
        version = data.ingest(labelled_uri, config, mode="append", on_invalid="quarantine", progress=say)
        say(f"data version {version.version}: {version.num_rows} rows (+{version.num_rows_added} production)")
        done = {
            "data_version": version.version,
            "num_labelled_rows": rows.table.num_rows,
            "labels_through_us": rows.labels_through_us,
            "champion_before": before,
        }
        _save_progress(folder, done)
    data_version = int(done["data_version"])
    run_name = f"{config.name}-{tag}"  # fixed: a re-submitted job resumes the killed one's checkpoints
    if "model_version" not in done:
        registered = None if config.retraining.sweep else _version_trained_as(config, run_name)
        if registered is not None:  # the driver was killed after registering, before recording it
            say(f"version {registered} was already trained and registered as {run_name}")
            done["model_version"] = registered
        elif config.retraining.sweep:
            done["model_version"] = tune_and_register(
                config, data_version=data_version, say=say
            ).model_version.version
        else:
            trained = train_and_register(config, data_version=data_version, run_name=run_name, say=say)
            done["model_version"] = trained.model_version.version
        _save_progress(folder, done)
    model_version = int(done["model_version"])
    ref = f"{config.name}/{model_version}"
    common = dict(
        num_labelled_rows=int(done["num_labelled_rows"]),
        labels_through_us=done["labels_through_us"],
        data_version=data_version,
        model_version=model_version,
        champion_before=before,
    )
    champion = registry.champion(config)
    if "gate_report_id" in done and champion is not None and champion.version == model_version:
        # the driver was killed after the promotion, before recording it
        outcome = _promoted(model_version, before, done["gate_report_id"], common)
        _save_progress(folder, {**done, "outcome": outcome.summary()})
        return _record_retrain(config, submission_id, outcome, say)
    report = evaluate.gate(config, ref, data_version=data_version, progress=say)
    for line in report.summary().splitlines():
        say(line)
    common["gate_report_id"] = report.report_id
    if not report.passed:
        reasons = "; ".join(f"{c.rule} [{c.subject}]: {c.detail}" for c in report.failures)
        outcome = RetrainOutcome("rejected", f"gate rejected version {model_version}: {reasons}", **common)
        _save_progress(folder, {**done, "outcome": outcome.summary()})
        return _record_retrain(config, submission_id, outcome, say)
    done["gate_report_id"] = report.report_id
    _save_progress(folder, done)
    from raymlops.pipeline._canary import run_canary

    reason = f"{tag}: retrained on production labels, gate {report.report_id} passed"
    rules = config.canary
    if before is not None and rules.enabled and rules.steps:
        canary = run_canary(config, ref, reason=reason, say=say)
        common["canary"] = canary.detail
        if canary.outcome != "promoted":
            what = "rolled back" if canary.outcome == "rolled_back" else "not promoted"
            outcome = RetrainOutcome(
                canary.outcome, f"version {model_version} {what}: {canary.detail}", **common
            )
            _save_progress(folder, {**done, "outcome": outcome.summary()})
            return _record_retrain(config, submission_id, outcome, say)
    else:
        registry.promote(config, ref, reason=reason)
    outcome = _promoted(model_version, before, report.report_id, common)
    _save_progress(folder, {**done, "outcome": outcome.summary()})
    return _record_retrain(config, submission_id, outcome, say)


def _promoted(
    model_version: int, before: int | None, report_id: str, common: dict[str, Any]
) -> RetrainOutcome:
    detail = f"version {model_version} promoted (was {before}); gate {report_id} passed"
    if common.get("canary"):
        detail += f"; {common['canary']}"
    return RetrainOutcome("promoted", detail, **{**common, "gate_report_id": report_id})


def _version_trained_as(config: ProjectConfig, run_name: str) -> int | None:
    """The version registered from a finished training run of this name, if there is one."""

    from raymlops import runtime

    client = runtime.mlflow_client(config)
    experiment = client.get_experiment_by_name(config.name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`ray.train.run_name` = '{run_name}' and attributes.status = 'FINISHED'",
    )
    versions = [
        int(v.version)
        for run in runs
        for v in client.search_model_versions(f"run_id = '{run.info.run_id}'")
        if v.name == config.name
    ]
    return max(versions) if versions else None


_PROGRESS_FILE = "progress.json"
_SUBMISSION_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a folder name, never ".."


def _load_progress(folder: str) -> dict[str, Any]:
    """The steps a retrain of this submission already finished (empty on its first attempt).

    A killed retrain job re-submitted under the same id must not append the
    production rows a second time nor start training over.
    """
    import json

    from raymlops._internal.files import read_text

    text = read_text(join(folder, _PROGRESS_FILE))
    return dict(json.loads(text)) if text else {}


def _save_progress(folder: str, done: dict[str, Any]) -> None:
    """Record the finished steps atomically: a kill leaves the old record or the new one, whole."""
    import json

    from raymlops._internal.files import replace_text

    replace_text(join(folder, _PROGRESS_FILE), json.dumps(done, sort_keys=True))


def _record_retrain(
    config: ProjectConfig, submission_id: str | None, outcome: RetrainOutcome, say: Say
) -> RetrainOutcome:
    import json

    from raymlops import monitor
    from raymlops._internal.files import replace_text

    say(f"retrain {outcome.outcome}: {outcome.detail}")
    if submission_id:
        replace_text(
            monitor.job_result_uri(config, submission_id),
            json.dumps(outcome.summary(), sort_keys=True, default=str),
        )
    return outcome


@dataclasses.dataclass(frozen=True)
class PipelineOutcome:
    """One pass of the pipeline: the data version, the trained model, the gate, the endpoint."""

    data_version: int
    trained: TrainOutcome
    promotion: PromotionOutcome
    endpoint_url: str | None

    def summary(self) -> dict[str, object]:
        report = self.promotion.report
        return {
            "data_version": self.data_version,
            **self.trained.summary(),
            "gate_passed": report.passed if report else None,
            "gate_report_id": report.report_id if report else None,
            "promoted": self.promotion.promoted,
            "endpoint_url": self.endpoint_url,
        }


def run(
    config: ProjectConfig,
    *,
    source: str | None = None,
    sweep: bool = False,
    deploy_endpoint: bool = True,
    say: Say | None = None,
) -> PipelineOutcome:
    """Ingest → prepare → train (or sweep) → gate → promote → deploy, as one job.

    ``source`` (default ``data.source``) is ingested as a new data version
    first; without one the latest version is used. The endpoint and the drift
    monitor outlive the calling process (a Ray job ends, they keep serving).
    Needs a running Ray.
    """
    from raymlops import data

    say = say or (lambda _m: None)
    source = source or config.data.source
    if source:
        data.ingest(source, config, progress=say)
    prepared = _prepare(config, None, say)
    trained = (tune_and_register if sweep else train_and_register)(config, prepared=prepared, say=say)
    mv = trained.model_version
    promotion = gate_and_promote(
        config, f"{mv.name}/{mv.version}", reason="pipeline: newly trained model", say=say
    )
    if promotion.report is not None:
        say(promotion.report.summary().splitlines()[0])
    url = deploy(config, say=say).url if deploy_endpoint else None
    return PipelineOutcome(prepared.dataset_version.version, trained, promotion, url)


def deploy(config: ProjectConfig, *, jobs_address: str | None = None, say: Say | None = None) -> Endpoint:
    """Start the drift monitor (when ``monitoring.enabled``) and deploy the endpoint.

    Both are detached: they keep running after the calling process or job
    ends. ``jobs_address`` is where the monitor submits retrain jobs (default:
    this cluster's dashboard).
    """
    from raymlops import monitor, runtime, serve

    say = say or (lambda _m: None)
    if config.monitoring.enabled:
        jobs_address = jobs_address or runtime.dashboard_url()
        monitor.start(config, jobs_address=jobs_address)
        where = jobs_address or "no Jobs API (no dashboard): retraining cannot be submitted"
        say(f"drift monitor {config.monitor_actor_name} running; retrain jobs go to {where}")
    return serve.deploy(config, progress=say)
