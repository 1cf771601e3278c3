"""Scoring one model on holdout rows: metrics, slices, fairness gaps, permutation importance."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from raymlops.config import LOWER_IS_BETTER, ProjectConfig
from raymlops.errors import DataError
from raymlops.evaluate._metrics import Scored, bootstrap_intervals, metric_value, metrics_of
from raymlops.evaluate._report import Evaluation, FairnessGap, FeatureImportance, SliceMetrics

if TYPE_CHECKING:
    import pandas as pd

    from raymlops.bundle import Predictor
    from raymlops.data import DatasetVersion

_PREDICT_CHUNK_ROWS = 50_000


def evaluate_predictor(
    predictor: Predictor,
    rows: pd.DataFrame,
    config: ProjectConfig,
    *,
    model_name: str,
    model_version: int,
    dataset_version: DatasetVersion,
) -> Evaluation:
    """Score a loaded model on holdout rows: metrics, slices, importance, fairness."""
    task = config.model.task
    gate_cfg = config.gate
    label = config.data.schema.label.name
    if rows.empty:
        raise DataError(
            f"the holdout of data version {dataset_version.version} is empty; the gate needs rows in "
            "the test split (split.test_fraction) to compare models"
        )
    scored = _score(predictor, rows, label, task)
    metrics = metrics_of(scored, task)
    schema = config.data.schema
    columns = list(dict.fromkeys(schema.slice_columns + schema.sensitive_columns))
    absent = [c for c in columns if c not in rows.columns]
    if absent:
        raise DataError(
            f"slice or sensitive column(s) {absent} are not in data version {dataset_version.version}; "
            "ingest data that has them, or remove them from data.schema"
        )
    categorical = set(schema.categorical_features) | {
        c.name for c in schema.metadata_columns if c.allowed is not None or c.dtype in ("string", "bool")
    }
    slices = tuple(
        s
        for column in columns
        for s in _slices(
            rows[column],
            column,
            scored,
            task,
            gate_cfg.slice_num_bins if column not in categorical else None,
            config.slice_metric,
        )
    )
    fairness = tuple(
        _fairness(
            [s for s in slices if s.column == column], column, config.slice_metric, gate_cfg.min_slice_rows
        )
        for column in schema.sensitive_columns
    )
    importance = _permutation_importance(predictor, rows, scored, config)
    return Evaluation(
        model_name=model_name,
        model_version=model_version,
        task=task,
        data_table_uri=dataset_version.table_uri,
        data_version=dataset_version.version,
        data_digest=dataset_version.digest,
        num_rows=len(rows),
        metrics=metrics,
        slices=slices,
        importance=importance,
        importance_metric=config.importance_metric,
        fairness=tuple(f for f in fairness if f is not None),
        created_at=now(),
        intervals=bootstrap_intervals(scored, task, gate_cfg.interval_resamples, gate_cfg.seed),
    )


def _score(predictor: Predictor, rows: pd.DataFrame, label: str, task: str) -> Scored:
    if label not in rows.columns:
        raise DataError(f"the holdout has no label column {label!r}; it is needed to score models")
    y_pred, proba = _outputs(predictor, rows, task)
    return Scored(_truth(predictor, rows[label].to_numpy(), task), y_pred, proba)


def _truth(predictor: Predictor, truth: np.ndarray, task: str) -> np.ndarray:
    """Labels as the model's class indices (the target itself for regression)."""
    if task == "regression":
        return truth.astype(np.float64)
    classes = list(predictor.classes or [])
    index = {c: i for i, c in enumerate(classes)}
    y_true = np.array([index.get(v.item() if hasattr(v, "item") else v, -1) for v in truth], dtype=np.int64)
    unknown = sorted({str(v) for v, i in zip(truth, y_true, strict=True) if i < 0})
    if unknown:
        raise DataError(
            f"holdout labels {unknown[:5]} are not classes the model knows ({classes}); "
            "declare data.schema.label.classes so that training sees every class"
        )
    return y_true


def _outputs(predictor: Predictor, rows: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted class indices (or values) and the class-probability matrix."""
    out = _predict(predictor, rows)
    if task == "regression":
        return out["prediction"].to_numpy(np.float64), None
    if task == "binary":
        p = out["probability"].to_numpy(np.float64)
        return (p >= 0.5).astype(np.int64), np.column_stack([1.0 - p, p])  # the Predictor's decision rule
    proba = out[[f"probability_{c}" for c in predictor.classes or []]].to_numpy(np.float64)
    return proba.argmax(axis=1), proba


def _predict(predictor: Predictor, rows: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    parts = [
        predictor.predict_frame(rows.iloc[start : start + _PREDICT_CHUNK_ROWS])
        for start in range(0, len(rows), _PREDICT_CHUNK_ROWS)
    ]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _groups(values: pd.Series, num_bins: int | None) -> tuple[np.ndarray, list[str]]:
    """Group codes and names: one group per category (``num_bins`` None), else quantile bins.

    Nulls (and NaN) form a ``null`` group; infinities fall into the outer bins.
    """
    null = values.isna().to_numpy()
    if num_bins is not None:
        numeric = values.to_numpy(np.float64, na_value=np.nan)
        finite = numeric[np.isfinite(numeric)]
        edges: Any = np.unique(np.quantile(finite, np.linspace(0, 1, num_bins + 1))) if len(finite) else []
        if len(edges) < 2:
            names = [f"{edges[0]:.6g}"] if len(edges) else []
            return np.where(null, len(names), 0).astype(np.int64), [*names, "null"]
        codes = np.clip(np.searchsorted(edges, numeric, side="right") - 1, 0, len(edges) - 2)
        names = [
            f"[{edges[i]:.6g}, {edges[i + 1]:.6g}{']' if i == len(edges) - 2 else ')'}"
            for i in range(len(edges) - 1)
        ]
        return np.where(null, len(names), codes).astype(np.int64), [*names, "null"]
    text = values.astype(object)
    labels = sorted({str(v) for v, is_null in zip(text, null, strict=True) if not is_null})
    lookup = {name: i for i, name in enumerate(labels)}
    codes = np.array(
        [len(labels) if is_null else lookup[str(v)] for v, is_null in zip(text, null, strict=True)],
        dtype=np.int64,
    )
    return codes, [*labels, "null"]


def _slices(
    values: pd.Series, column: str, scored: Scored, task: str, num_bins: int | None, slice_metric: str
) -> list[SliceMetrics]:
    codes, names = _groups(values, num_bins)
    out = []
    for code, name in enumerate(names):
        index = np.flatnonzero(codes == code)
        if not len(index):
            continue
        part = scored.take(index)
        rate = float(np.mean(part.y_pred == 1)) if task == "binary" else None
        out.append(SliceMetrics(column, name, len(index), metrics_of(part, task), rate))
    return out


def _fairness(slices: list[SliceMetrics], column: str, metric: str, min_rows: int) -> FairnessGap | None:
    judged = [s for s in slices if s.num_rows >= min_rows and math.isfinite(s.metrics[metric])]
    if len(judged) < 2:
        return None
    better = max if metric not in LOWER_IS_BETTER else min
    worse = min if metric not in LOWER_IS_BETTER else max
    best = better(judged, key=lambda s: s.metrics[metric])
    worst = worse(judged, key=lambda s: s.metrics[metric])
    rates = [s.positive_rate for s in judged if s.positive_rate is not None]
    return FairnessGap(
        column=column,
        metric=metric,
        metric_gap=abs(best.metrics[metric] - worst.metrics[metric]),
        positive_rate_gap=(max(rates) - min(rates)) if rates else None,
        best_group=best.group,
        worst_group=worst.group,
        num_groups=len(judged),
    )


def _permutation_importance(
    predictor: Predictor, rows: pd.DataFrame, scored: Scored, config: ProjectConfig
) -> tuple[FeatureImportance, ...]:
    """Shuffle one feature at a time (``importance_repeats`` times) and measure the metric's loss.

    All repeats of a feature go through the model as one batch, on at most
    ``importance_max_rows`` holdout rows, so the cost is one vectorised
    prediction per feature.
    """
    import pandas as pd

    gate_cfg = config.gate
    task = config.model.task
    metric = config.importance_metric
    rng = np.random.default_rng(gate_cfg.seed)
    if len(rows) > gate_cfg.importance_max_rows:
        keep = np.sort(rng.choice(len(rows), size=gate_cfg.importance_max_rows, replace=False))
        rows, scored = rows.iloc[keep].reset_index(drop=True), scored.take(keep)
    else:
        rows = rows.reset_index(drop=True)
    features = list(predictor.feature_names)
    base_rows = rows[features]
    baseline = metric_value(scored, task, metric)
    sign = -1.0 if metric not in LOWER_IS_BETTER else 1.0  # importance > 0 means "worse when shuffled"
    repeats = gate_cfg.importance_repeats
    n = len(rows)
    raw: list[tuple[str, float, float]] = []
    for feature in features:
        stacked = pd.concat([base_rows] * repeats, ignore_index=True)
        column = stacked.columns.get_loc(feature)
        shuffled = np.concatenate([base_rows[feature].to_numpy()[rng.permutation(n)] for _ in range(repeats)])
        stacked.isetitem(column, shuffled)
        y_pred, proba = _outputs(predictor, stacked, task)
        permuted = Scored(np.tile(scored.y_true, repeats), y_pred, proba)
        drops = [
            sign * (metric_value(permuted.take(np.arange(r * n, (r + 1) * n)), task, metric) - baseline)
            for r in range(repeats)
        ]
        raw.append((feature, float(np.mean(drops)), float(np.std(drops))))
    positive = sum(max(value, 0.0) for _, value, _ in raw if math.isfinite(value))
    found = [
        FeatureImportance(name, value, std, max(value, 0.0) / positive if positive > 0 else 0.0)
        for name, value, std in raw
    ]
    return tuple(sorted(found, key=lambda f: -f.importance if math.isfinite(f.importance) else math.inf))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
