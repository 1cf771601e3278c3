"""Is the champion's live metric worse than its holdout metric, beyond noise? One-sided tests.

Both numbers are estimates: the live metric from the last
``monitoring.performance_window_size`` labelled rows, the holdout metric from
the gate's holdout (often a few hundred rows, sometimes fifty). A bare
difference triggered retrains on stationary traffic: 50 live labels at 0.92
against a 56-row holdout at 0.98 is a 0.06 drop that such samples show by
chance. A window counts as degraded only when

* the observed drop is at least ``monitoring.performance_drop`` (the smallest
  drop worth a retrain), and
* a one-sided test of "the live metric is no worse than the holdout's",
  counting the sampling error of both samples, gives a p-value at or below
  ``monitoring.performance_p_value``.

Accuracy uses Newcombe's hybrid score interval for a difference of two
proportions (Wilson intervals of each side), which stays well-behaved near
accuracies of 0.95-1.0 where the normal approximation does not. RMSE compares
mean squared errors with a normal test; the holdout's spread of squared errors
is taken to be the live one's (the gate keeps only its RMSE and row count).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The champion's holdout metric and how many holdout rows it came from."""

    value: float
    num_rows: int | None  # None: an older gate that did not record it (treated as exact)


@dataclasses.dataclass(frozen=True)
class DropTest:
    """How much worse the live metric is, and how sure we can be that it is worse at all."""

    worse_by: float  # accuracy: holdout - live; RMSE: live / holdout - 1
    p_value: float  # one-sided: the chance of a drop this large if the live metric were no worse
    lower_bound: float  # of the drop (accuracy) or of the MSE rise, at 1 - p_value_threshold


def describe(record: dict[str, object]) -> str:
    """One line for a live-metric judgement as the monitor records it (``monitor status``, the report)."""
    test = f", worse by {record['worse_by']:.4f}, p = {record['p_value']:.2g}" if "p_value" in record else ""
    baseline = record.get("baseline")
    holdout = (
        f"holdout {baseline:.4f} on {record.get('baseline_num_rows') or '?'} rows"
        if baseline is not None
        else "no holdout metric"
    )
    return (
        f"{record['metric']} {record['value']:.4f} on {record['num_rows']} labelled rows "
        f"({holdout}{test}): {record['verdict']}"
    )


def accuracy_drop(baseline: Baseline, num_correct: int, num_rows: int, alpha: float) -> DropTest:
    """Test "live accuracy >= holdout accuracy" on ``num_correct`` of ``num_rows`` live rows.

    Example:
        >>> accuracy_drop(Baseline(0.98, 56), 46, 50, 0.001).p_value > 0.01
        True
    """
    p_h, p_l = baseline.value, num_correct / num_rows
    worse = p_h - p_l
    n_h = baseline.num_rows
    bound = _newcombe_lower(p_h, n_h, p_l, num_rows, stats.norm.isf(alpha))
    if worse <= 0:
        return DropTest(worse, 1.0, bound)
    # the p-value is the level at which the lower bound of the drop reaches 0 (bisection on z)
    low, high = 0.0, 40.0
    for _ in range(60):
        mid = (low + high) / 2
        if _newcombe_lower(p_h, n_h, p_l, num_rows, mid) > 0:
            low = mid
        else:
            high = mid
    return DropTest(worse, float(stats.norm.sf(low)), bound)


def rmse_rise(baseline: Baseline, squared_errors: np.ndarray, alpha: float) -> DropTest:
    """Test "live MSE <= holdout MSE" on the live rows' squared errors."""
    n_l = len(squared_errors)
    mse_l, mse_h = float(np.mean(squared_errors)), baseline.value**2
    worse = math.sqrt(mse_l) / max(baseline.value, 1e-12) - 1.0
    spread = float(np.std(squared_errors, ddof=1)) if n_l > 1 else 0.0
    variance = spread**2 / n_l + (spread**2 / baseline.num_rows if baseline.num_rows else 0.0)
    se = math.sqrt(variance)
    if se == 0.0:
        return DropTest(worse, 0.0 if mse_l > mse_h else 1.0, mse_l - mse_h)
    z = (mse_l - mse_h) / se
    return DropTest(worse, float(stats.norm.sf(z)), mse_l - mse_h - float(stats.norm.isf(alpha)) * se)


def _newcombe_lower(p_h: float, n_h: int | None, p_l: float, n_l: int, z: float) -> float:
    """Lower bound of ``p_h - p_l`` (Newcombe 1998, method 10); an exact ``p_h`` when ``n_h`` is None."""
    low_h = p_h if n_h is None else _wilson(p_h, n_h, z)[0]
    high_l = _wilson(p_l, n_l, z)[1]
    return (p_h - p_l) - math.sqrt((p_h - low_h) ** 2 + (high_l - p_l) ** 2)


def _wilson(p: float, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` observed on ``n`` rows."""
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return centre - half, centre + half
