"""Evaluation and the validation gate: no model becomes champion without a report a reviewer can read.

``evaluate`` scores one registered version on the holdout (the test split of a
data version): task metrics, metrics per slice, permutation feature importance
and fairness gaps. ``gate`` scores the challenger and the current champion on
**the same holdout rows**, applies the rules of ``config.gate`` (modelled on
MLflow's ``MetricThreshold``) and returns a ``GateReport``, which it logs to the
challenger's MLflow run as JSON and Markdown and summarises in model-version
tags that ``registry.promote`` checks.

Everything here runs in the calling process on NumPy: a holdout is small, and
``raymlops evaluate`` should answer in seconds without starting Ray. The metric
functions are plain functions of arrays and agree with scikit-learn's
(``tests/unit/test_metrics.py``).

Example:
    >>> report = gate(cfg, "churn/2")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    >>> registry.promote(cfg, "churn/2", reason="weekly retrain")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from raymlops import registry
from raymlops.config import ProjectConfig
from raymlops.errors import VersionNotFoundError
from raymlops.evaluate._metrics import accuracy, calibration_error, f1, log_loss, mae, r2, rmse, roc_auc
from raymlops.evaluate._report import (
    Evaluation,
    FairnessGap,
    FeatureImportance,
    GateCheck,
    GateReport,
    SliceMetrics,
    fmt,
)
from raymlops.evaluate._rules import check
from raymlops.evaluate._scoring import evaluate_predictor, now

if TYPE_CHECKING:
    import pandas as pd

    from raymlops.data import DatasetVersion
    from raymlops.registry import ModelVersion

__all__ = [
    "Evaluation",
    "FairnessGap",
    "FeatureImportance",
    "GateCheck",
    "GateReport",
    "SliceMetrics",
    "accuracy",
    "calibration_error",
    "check",
    "evaluate",
    "evaluate_predictor",
    "f1",
    "gate",
    "load_report",
    "log_loss",
    "mae",
    "r2",
    "rmse",
    "roc_auc",
]

Progress = Callable[[str], None]


def evaluate(
    config: ProjectConfig,
    ref: str,
    *,
    data_version: int | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Score one registered version on the holdout of a data version (default: the latest)."""
    say = progress or (lambda _m: None)
    mv = registry.resolve(config, ref)
    dataset_version, rows = _holdout(config, data_version, say)
    return _evaluate_version(config, mv, dataset_version, rows, say)


def _holdout(
    config: ProjectConfig, data_version: int | None, say: Progress
) -> tuple[DatasetVersion, pd.DataFrame]:
    from raymlops import data

    dataset_version = data.get_version(config.table_uri, data_version)
    rows = data.holdout(dataset_version, config).to_pandas()
    say(
        f"holdout: {len(rows)} rows of data version {dataset_version.version} "
        f"({dataset_version.short_digest})"
    )
    return dataset_version, rows


def _evaluate_version(
    config: ProjectConfig,
    mv: ModelVersion,
    dataset_version: DatasetVersion,
    rows: pd.DataFrame,
    say: Progress,
) -> Evaluation:
    predictor = registry.load_predictor(config, f"{mv.name}/{mv.version}")
    evaluation = evaluate_predictor(
        predictor, rows, config, model_name=mv.name, model_version=mv.version, dataset_version=dataset_version
    )
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in evaluation.metrics.items())
    say(f"{mv.name} version {mv.version}: {shown}")
    return evaluation


def gate(
    config: ProjectConfig,
    ref: str,
    *,
    data_version: int | None = None,
    log: bool = True,
    progress: Progress | None = None,
) -> GateReport:
    """Compare a challenger with the current champion on the same holdout rows and decide.

    With no champion yet (or when ``ref`` is the champion), only the absolute
    rules apply. With ``log``, the report goes to the challenger's MLflow run
    (``gate/<report_id>.json`` and ``.md``, metrics ``holdout_<metric>``) and its
    verdict to the model version's tags, where ``registry.promote`` reads it.
    """
    say = progress or (lambda _m: None)
    challenger_mv = registry.resolve(config, ref)
    champion_mv = registry.champion(config, challenger_mv.name)
    if champion_mv is not None and champion_mv.version == challenger_mv.version:
        champion_mv = None
    dataset_version, rows = _holdout(config, data_version, say)
    challenger = _evaluate_version(config, challenger_mv, dataset_version, rows, say)
    champion = _evaluate_version(config, champion_mv, dataset_version, rows, say) if champion_mv else None
    checks = check(challenger, champion, config)
    report = GateReport(
        report_id=f"gate-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
        model_name=challenger_mv.name,
        challenger_version=challenger_mv.version,
        champion_version=champion_mv.version if champion_mv else None,
        passed=all(c.passed is not False for c in checks),
        checks=checks,
        challenger=challenger,
        champion=champion,
        created_at=now(),
        warnings=_holdout_warnings(challenger, config),
    )
    if log:
        _log(config, challenger_mv, report)
    return report


def _holdout_warnings(challenger: Evaluation, config: ProjectConfig) -> tuple[str, ...]:
    """Say how little a small holdout can tell, with the interval of the gate's own metrics."""
    minimum = config.gate.min_holdout_rows
    if challenger.num_rows >= minimum:
        return ()
    shown = ", ".join(
        f"{rule.metric} {challenger.metric_text(rule.metric)}"
        for rule in config.gate_rules
        if rule.metric in challenger.metrics
    )
    return (
        f"only {challenger.num_rows} holdout rows (gate.min_holdout_rows {minimum}): {shown} "
        "(95 % intervals); a verdict on so few rows can be noise. Ingest more data or raise "
        "split.test_fraction.",
    )


def _log(config: ProjectConfig, mv: ModelVersion, report: GateReport) -> None:
    from raymlops import runtime

    client = runtime.mlflow_client(config)
    ev = report.challenger
    client.log_text(mv.run_id, report.to_json(), f"gate/{report.report_id}.json")
    client.log_text(mv.run_id, report.to_markdown(), f"gate/{report.report_id}.md")
    client.log_text(
        mv.run_id,
        json.dumps(ev.to_dict(), indent=1, sort_keys=True),
        f"evaluation/data_v{ev.data_version}.json",
    )
    step = ev.data_version
    for key, value in ev.metrics.items():
        if math.isfinite(value):
            client.log_metric(mv.run_id, f"holdout_{key}", value, step=step)
    # the monitor weighs a live metric against the holdout's by both samples' sizes
    client.log_metric(mv.run_id, "holdout_num_rows", ev.num_rows, step=step)
    failures = "; ".join(f"{c.rule} [{c.subject}]" for c in report.failures)
    tags = {
        registry.TAG_GATE_PASSED: "true" if report.passed else "false",
        registry.TAG_GATE_REPORT_ID: report.report_id,
        registry.TAG_GATE_CHAMPION: str(report.champion_version)
        if report.champion_version is not None
        else "none",
        registry.TAG_GATE_DATA: f"{ev.data_version}:{ev.data_digest[:12]}",
        registry.TAG_GATE_FAILURES: failures[:4000] or "none",
    }
    registry.Registry(config).tag_version(mv, tags)


def load_report(config: ProjectConfig, ref: str, report_id: str | None = None) -> GateReport:
    """A gate report logged for a version (default: the latest one).

    Raises:
        VersionNotFoundError: the version has no gate report (nothing is misconfigured).
    """
    import mlflow

    from raymlops import runtime

    mv = registry.resolve(config, ref)
    report_id = report_id or mv.tags.get(registry.TAG_GATE_REPORT_ID)
    if not report_id:
        raise VersionNotFoundError(
            f"{mv.name}/{mv.version} has no gate report; run `raymlops evaluate {mv.name}/{mv.version}`"
        )
    runtime.configure_mlflow(config)
    text = mlflow.artifacts.load_text(f"runs:/{mv.run_id}/gate/{report_id}.json")
    return GateReport.from_json(text)
