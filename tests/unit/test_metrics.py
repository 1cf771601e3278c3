"""Holdout metrics agree with scikit-learn's on random inputs (within 1e-9)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from raymlops import evaluate as ev

TOL = 1e-9


def _binary(seed: int, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]  # both classes present
    p = rng.random(n)
    if ties:
        p = np.round(p, 1)  # many tied scores: the AUC must count ties as one half
    return y, p


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 400), ties=st.booleans())
def test_binary_metrics_match_sklearn(seed, n, ties):
    y, p = _binary(seed, n, ties)
    proba = np.column_stack([1 - p, p])
    pred = (p >= 0.5).astype(int)
    assert ev.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
    assert ev.f1(y, pred, 2) == pytest.approx(skm.f1_score(y, pred, zero_division=0), abs=TOL)
    assert ev.roc_auc(y, proba) == pytest.approx(skm.roc_auc_score(y, p), abs=TOL)
    assert ev.log_loss(y, proba) == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), abs=TOL)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 400), k=st.integers(3, 5))
def test_multiclass_metrics_match_sklearn(seed, n, k):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k) if n >= k else y[:k]
    if len(np.unique(y)) < k:
        return
    logits = rng.normal(size=(n, k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    labels = list(range(k))
    assert ev.f1(y, pred, k) == pytest.approx(
        skm.f1_score(y, pred, average="macro", labels=labels, zero_division=0), abs=TOL
    )
    assert ev.roc_auc(y, proba) == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels), abs=TOL
    )
    assert ev.log_loss(y, proba) == pytest.approx(skm.log_loss(y, proba, labels=labels), abs=TOL)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 500), bins=st.integers(2, 15))
def test_calibration_error_matches_sklearn_calibration_curve(seed, n, bins):
    y, p = _binary(seed, n, ties=False)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    # calibration_curve drops empty bins; weight the remaining ones by their counts
    edges = np.linspace(0, 1, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    counts = counts[counts > 0]
    expected = float(np.sum(np.abs(prob_true - prob_pred) * counts) / n)
    got = ev.calibration_error(y, np.column_stack([1 - p, p]), num_bins=bins)
    assert got == pytest.approx(expected, abs=TOL)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 400), constant=st.booleans())
def test_regression_metrics_match_sklearn(seed, n, constant):
    rng = np.random.default_rng(seed)
    y = np.full(n, 3.5) if constant else rng.normal(10, 4, n)
    pred = y + rng.normal(0, 2, n)
    assert ev.rmse(y, pred) == pytest.approx(skm.root_mean_squared_error(y, pred), abs=TOL)
    assert ev.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred), abs=TOL)
    assert ev.r2(y, pred) == pytest.approx(skm.r2_score(y, pred), abs=TOL)


def test_auc_is_nan_when_a_class_is_missing():
    assert np.isnan(ev.roc_auc(np.zeros(5, dtype=int), np.full((5, 2), 0.5)))


def test_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.8, 0.9])
    assert ev.roc_auc(y, np.column_stack([1 - p, p])) == 1.0
    assert ev.roc_auc(y, np.column_stack([p, 1 - p])) == 0.0
