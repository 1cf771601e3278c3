"""Holdout metrics as plain functions of NumPy arrays; each agrees with scikit-learn's.

Labels are class indices 0..k-1 and ``proba`` is an (n, k) matrix of class
probabilities (binary: [1 - p, p]). ``tests/unit/test_metrics.py`` checks
every function against scikit-learn on random inputs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if len(y_true) else math.nan


def f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Binary: F1 of the second class; multiclass: the unweighted mean over classes (macro)."""
    if not len(y_true):
        return math.nan
    classes = [1] if num_classes == 2 else range(num_classes)
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        denominator = 2 * tp + np.sum((y_pred == c) & (y_true != c)) + np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Binary: area under the ROC curve; multiclass: macro one-vs-rest. NaN when a class is absent.

    Computed as the Mann-Whitney statistic over average ranks, which equals the
    trapezoidal area scikit-learn reports (ties count one half) without a sort per class.
    """
    from scipy.stats import rankdata

    num_classes = proba.shape[1]
    classes = [1] if num_classes == 2 else range(num_classes)
    areas = []
    for c in classes:
        positive = y_true == c
        num_pos = int(positive.sum())
        num_neg = len(y_true) - num_pos
        if num_pos == 0 or num_neg == 0:
            return math.nan
        ranks = rankdata(proba[:, c])
        areas.append((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))
    return float(np.mean(areas))


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, probabilities clipped to [eps, 1 - eps]."""
    if not len(y_true):
        return math.nan
    eps = np.finfo(np.float64).eps
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1 - eps)
    return float(-np.mean(np.log(p_true)))


def calibration_error(y_true: np.ndarray, proba: np.ndarray, num_bins: int = 10) -> float:
    """Expected calibration error over equal-width bins.

    Binary: of the positive-class probability (the bins of scikit-learn's
    ``calibration_curve(strategy="uniform")``); multiclass: of the top-label confidence.
    """
    if not len(y_true):
        return math.nan
    if proba.shape[1] == 2:
        confidence, outcome = proba[:, 1], (y_true == 1).astype(np.float64)
    else:
        top = proba.argmax(axis=1)
        confidence, outcome = proba[np.arange(len(top)), top], (top == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence)
    counts = np.bincount(bins, minlength=num_bins)
    sum_conf = np.bincount(bins, weights=confidence, minlength=num_bins)
    sum_outcome = np.bincount(bins, weights=outcome, minlength=num_bins)
    used = counts > 0
    gaps = np.abs(sum_outcome[used] / counts[used] - sum_conf[used] / counts[used])
    return float(np.sum(gaps * counts[used]) / len(y_true))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2))) if len(y_true) else math.nan


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y_true - y_pred))) if len(y_true) else math.nan


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination; like scikit-learn, 1.0 or 0.0 for a constant target."""
    if len(y_true) < 2:
        return math.nan
    residual = float(np.sum((y_true - y_pred) ** 2))
    total = float(np.sum((y_true - np.mean(y_true)) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


@dataclasses.dataclass(frozen=True)
class Scored:
    """A model's outputs on some rows, next to the truth."""

    y_true: np.ndarray  # class index, or the target value for regression
    y_pred: np.ndarray
    proba: np.ndarray | None  # (n, k) for classification

    def take(self, index: np.ndarray) -> Scored:
        return Scored(
            self.y_true[index], self.y_pred[index], None if self.proba is None else self.proba[index]
        )


def metrics_of(scored: Scored, task: str) -> dict[str, float]:
    y, pred = scored.y_true, scored.y_pred
    if task == "regression":
        return {"rmse": rmse(y, pred), "mae": mae(y, pred), "r2": r2(y, pred)}
    assert scored.proba is not None
    return {
        "accuracy": accuracy(y, pred),
        "f1": f1(y, pred, scored.proba.shape[1]),
        "roc_auc": roc_auc(y, scored.proba),
        "log_loss": log_loss(y, scored.proba),
        "calibration_error": calibration_error(y, scored.proba),
    }


def bootstrap_intervals(
    scored: Scored, task: str, num_resamples: int, seed: int, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Each metric's percentile interval over ``num_resamples`` seeded resamples of the rows.

    Why: a gate on 56 holdout rows and one on 5,000 print the same kind of
    number; the interval says how far the true metric may be from it.
    """
    if num_resamples <= 0 or len(scored.y_true) < 2:
        return {}
    rng = np.random.default_rng(seed)
    n = len(scored.y_true)
    samples: dict[str, list[float]] = {}
    for _ in range(num_resamples):
        for key, value in metrics_of(scored.take(rng.integers(0, n, n)), task).items():
            samples.setdefault(key, []).append(value)
    tail = (1.0 - level) / 2 * 100
    out = {}
    for key, values in samples.items():
        finite = np.asarray([v for v in values if math.isfinite(v)])
        if len(finite) >= num_resamples // 2:  # e.g. ROC AUC of resamples with one class left out
            low, high = np.percentile(finite, [tail, 100 - tail])
            out[key] = (float(low), float(high))
    return out


def metric_value(scored: Scored, task: str, name: str) -> float:
    return metrics_of(scored, task)[name]
