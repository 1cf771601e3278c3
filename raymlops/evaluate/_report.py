"""The frozen results of evaluation and of the gate, and their JSON / Markdown forms."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class SliceMetrics:
    """The metrics of one group of holdout rows (a category, or a bin of a numeric column)."""

    column: str
    group: str
    num_rows: int
    metrics: dict[str, float]
    positive_rate: float | None  # share predicted as the positive class (binary only)

    @property
    def label(self) -> str:
        return f"{self.column}={self.group}"


@dataclasses.dataclass(frozen=True)
class FeatureImportance:
    """How much the holdout metric worsens when one feature's values are shuffled."""

    feature: str
    importance: float  # mean worsening over the repeats (positive: the model uses the feature)
    std: float
    share: float  # of the total positive importance


@dataclasses.dataclass(frozen=True)
class FairnessGap:
    """Best versus worst group of a sensitive column (groups with at least ``min_slice_rows``)."""

    column: str
    metric: str
    metric_gap: float
    positive_rate_gap: float | None
    best_group: str
    worst_group: str
    num_groups: int


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One model version scored on one holdout."""

    model_name: str
    model_version: int
    task: str
    data_table_uri: str
    data_version: int
    data_digest: str
    num_rows: int
    metrics: dict[str, float]
    slices: tuple[SliceMetrics, ...]
    importance: tuple[FeatureImportance, ...]  # most important first
    importance_metric: str
    fairness: tuple[FairnessGap, ...]
    created_at: str
    # each metric's 95 % bootstrap interval on this holdout (empty in reports of older versions)
    intervals: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def slice(self, label: str) -> SliceMetrics | None:
        return next((s for s in self.slices if s.label == label), None)

    def to_dict(self) -> dict[str, Any]:
        return _finite(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Evaluation:
        body = _nan(dict(body))
        body["slices"] = tuple(SliceMetrics(**s) for s in body["slices"])
        body["importance"] = tuple(FeatureImportance(**f) for f in body["importance"])
        body["fairness"] = tuple(FairnessGap(**f) for f in body["fairness"])
        body["intervals"] = {
            k: (_or_nan(low), _or_nan(high)) for k, (low, high) in body.get("intervals", {}).items()
        }
        return cls(**body)

    def metric_text(self, key: str) -> str:
        """``0.9123 [0.88, 0.94]``: the metric and its 95 % interval when there is one."""
        value = fmt(self.metrics[key])
        if key not in self.intervals:
            return value
        low, high = self.intervals[key]
        return f"{value} [{fmt(low)}, {fmt(high)}]"

    def render(self) -> str:
        """Metrics, slices, importance and fairness as plain-text tables."""
        lines = [
            f"{self.model_name} version {self.model_version} on the holdout of data version "
            f"{self.data_version} ({self.num_rows} rows, digest {self.data_digest[:12]})",
            "metrics     " + ", ".join(f"{k} {self.metric_text(k)}" for k in self.metrics),
        ]
        if self.slices:
            lines.append("slices")
            for s in self.slices:
                shown = ", ".join(f"{k} {fmt(v)}" for k, v in s.metrics.items())
                lines.append(f"  {s.label:<28} {s.num_rows:>7} rows  {shown}")
        if self.importance:
            lines.append(f"permutation importance (increase in {self.importance_metric} when shuffled)")
            for f in self.importance:
                lines.append(f"  {f.feature:<28} {f.importance:>9.4f} ± {f.std:.4f}  share {f.share:.2f}")
        for g in self.fairness:
            rate = f", positive-rate gap {g.positive_rate_gap:.4f}" if g.positive_rate_gap is not None else ""
            lines.append(
                f"fairness    {g.column}: {g.metric} gap {g.metric_gap:.4f} "
                f"(best {g.best_group}, worst {g.worst_group}){rate}"
            )
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class GateCheck:
    """One rule applied to the challenger: what was observed, against what, and the verdict."""

    rule: str  # e.g. "roc_auc max_regression", "slice floor accuracy"
    subject: str  # "overall", a slice label, a sensitive column or a feature
    observed: float | None  # the challenger's value
    baseline: float | None  # the champion's value, when the rule compares
    limit: float | None
    passed: bool | None  # None: not applicable here (skipped), with the reason in ``detail``
    detail: str

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "skipped"}[self.passed]


@dataclasses.dataclass(frozen=True)
class GateReport:
    """The gate's decision on a challenger, with every rule's evidence."""

    report_id: str
    model_name: str
    challenger_version: int
    champion_version: int | None
    passed: bool
    checks: tuple[GateCheck, ...]
    challenger: Evaluation
    champion: Evaluation | None
    created_at: str
    warnings: tuple[str, ...] = ()  # what the reader must know before trusting the verdict

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if c.passed is False)

    def summary(self) -> str:
        """A few lines a reviewer reads first: the decision, then each failed rule."""
        against = (
            f"champion version {self.champion_version}"
            if self.champion_version is not None
            else "no champion (absolute rules only)"
        )
        head = (
            f"gate {'PASSED' if self.passed else 'REJECTED'}: {self.model_name} version "
            f"{self.challenger_version} vs {against} on {self.challenger.num_rows} holdout rows of data "
            f"version {self.challenger.data_version} (report {self.report_id})"
        )
        judged = [c for c in self.checks if c.passed is not None]
        lines = [head, f"  {len(judged) - len(self.failures)}/{len(judged)} rules passed"]
        lines += [f"  FAIL {c.rule} [{c.subject}]: {c.detail}" for c in self.failures]
        ev = self.challenger
        if ev.intervals:
            shown = ", ".join(f"{k} {ev.metric_text(k)}" for k in ev.metrics if k in ev.intervals)
            lines.append(f"  holdout metrics with 95 % intervals ({ev.num_rows} rows): {shown}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def render(self) -> str:
        """The summary followed by every check."""
        lines = [self.summary(), "", f"  {'verdict':<8} {'rule':<32} {'subject':<26} detail"]
        for c in self.checks:
            lines.append(f"  {c.verdict:<8} {c.rule:<32} {c.subject:<26} {c.detail}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body["challenger"] = self.challenger.to_dict()
        body["champion"] = self.champion.to_dict() if self.champion else None
        return _finite(body)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GateReport:
        body = json.loads(text)
        body["checks"] = tuple(GateCheck(**_nan(c)) for c in body["checks"])
        body["warnings"] = tuple(body.get("warnings", ()))
        body["challenger"] = Evaluation.from_dict(body["challenger"])
        body["champion"] = Evaluation.from_dict(body["champion"]) if body["champion"] else None
        return cls(**body)

    def to_markdown(self) -> str:
        """The report as Markdown (logged next to the JSON in the challenger's MLflow run)."""
        ev = self.challenger
        out = [
            f"# Gate report {self.report_id}",
            "",
            f"**{'PASSED' if self.passed else 'REJECTED'}**: `{self.model_name}` version "
            f"{self.challenger_version} against "
            + (f"champion version {self.champion_version}" if self.champion_version else "no champion")
            + f", {ev.num_rows} holdout rows of `{ev.data_table_uri}` version {ev.data_version} "
            f"(digest `{ev.data_digest[:12]}`), {self.created_at}.",
            *[f"\n> **Warning:** {w}" for w in self.warnings],
            "",
            "| verdict | rule | subject | challenger | champion | limit | detail |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in self.checks:
            out.append(
                f"| {c.verdict} | {c.rule} | {c.subject} | {fmt(c.observed)} | {fmt(c.baseline)} | "
                f"{fmt(c.limit)} | {c.detail} |"
            )
        out += [
            "",
            f"## Holdout metrics ({ev.num_rows} rows; 95 % bootstrap intervals)",
            "",
            "| metric | challenger | champion |",
            "|---|---|---|",
        ]
        for key in ev.metrics:
            other = self.champion.metric_text(key) if self.champion and key in self.champion.metrics else "-"
            out.append(f"| {key} | {ev.metric_text(key)} | {other} |")
        if ev.slices:
            out += ["", "## Slices (challenger)", "", "| slice | rows | metrics |", "|---|---|---|"]
            for s in ev.slices:
                shown = ", ".join(f"{k} {fmt(v)}" for k, v in s.metrics.items())
                out.append(f"| {s.label} | {s.num_rows} | {shown} |")
        if ev.importance:
            out += ["", f"## Permutation importance ({ev.importance_metric})", ""]
            out += ["| feature | importance | std | share |", "|---|---|---|---|"]
            for f in ev.importance:
                out.append(f"| {f.feature} | {fmt(f.importance)} | {fmt(f.std)} | {f.share:.3f} |")
        return "\n".join(out) + "\n"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _finite(body: Any) -> Any:
    """JSON has no NaN: undefined metrics (a slice with one class) become null."""
    if isinstance(body, dict):
        return {k: _finite(v) for k, v in body.items()}
    if isinstance(body, (list, tuple)):
        return [_finite(v) for v in body]
    if isinstance(body, float) and not math.isfinite(body):
        return None
    return body


def _nan(body: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``_finite``: null floats of a stored report become NaN again."""
    if "metrics" in body:
        body["metrics"] = {k: math.nan if v is None else v for k, v in body["metrics"].items()}
    if "slices" in body:
        body["slices"] = [_nan(dict(s)) for s in body["slices"]]
    for key in ("importance", "fairness"):
        if key in body:
            body[key] = [_nan_floats(dict(item), _FLOAT_FIELDS[key]) for item in body[key]]
    return body


_FLOAT_FIELDS = {"importance": ("importance", "std", "share"), "fairness": ("metric_gap",)}


def _nan_floats(item: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: (math.nan if k in keys and v is None else v) for k, v in item.items()}
