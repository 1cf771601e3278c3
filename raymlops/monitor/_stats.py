"""Drift statistics as pure, vectorised NumPy functions (no Ray), each checked against SciPy.

Numeric tests compare a window of live values with the reference profile of the
training split: PSI over the profile's quantile bins, two-sample
Kolmogorov–Smirnov and Wasserstein distance against the profile's seeded
sample (sorted once per model version, not per window). Categorical tests
compare frequency tables: chi-square on the contingency table and
Jensen–Shannon distance, with unseen categories as their own column. Every
test declares the column kinds it applies to and its default threshold in
``TESTS``; ``tests/unit/test_drift_stats.py`` compares each with SciPy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from raymlops.errors import ConfigError

PSI_EPSILON = 1e-4  # smoothing for empty bins: ln(0) would make PSI infinite


@dataclasses.dataclass(frozen=True)
class DriftTest:
    """A registered test: what it applies to, its default threshold and how to read it."""

    name: str
    kinds: tuple[str, ...]  # "numeric", "categorical"
    threshold: float
    uses_p_value: bool  # drifted when p < threshold; otherwise when statistic >= threshold
    description: str


TESTS: dict[str, DriftTest] = {
    "psi": DriftTest(
        "psi", ("numeric",), 0.2, False, "population stability index over reference quantile bins"
    ),
    "ks": DriftTest("ks", ("numeric",), 0.05, True, "two-sample Kolmogorov-Smirnov test (p-value)"),
    "wasserstein": DriftTest(
        "wasserstein", ("numeric",), 0.1, False, "Wasserstein-1 distance in units of the reference std"
    ),
    "chi2": DriftTest(
        "chi2", ("categorical",), 0.05, True, "chi-square test of the contingency table (p-value)"
    ),
    "jensen_shannon": DriftTest(
        "jensen_shannon", ("categorical",), 0.1, False, "Jensen-Shannon distance of the frequencies (base e)"
    ),
}

SMALL_REFERENCE_ROWS = 1000  # Evidently's rule: p-value tests for small references, distances for large


def get_test(name: str, kind: str | None = None) -> DriftTest:
    """The registered test ``name``; a ``ConfigError`` lists the valid ones (for ``kind``)."""
    valid = [t for t in TESTS.values() if kind is None or kind in t.kinds]
    found = TESTS.get(name)
    if found is None or (kind is not None and kind not in found.kinds):
        names = ", ".join(t.name for t in valid)
        what = f"a {kind} feature" if kind else "a feature"
        raise ConfigError(f"unknown drift test {name!r} for {what}; valid tests: {names}")
    return found


def default_test(kind: str, reference_rows: int) -> str:
    """Evidently's choice: KS / chi-square for a small reference, Wasserstein / JS for a large one."""
    small = reference_rows <= SMALL_REFERENCE_ROWS
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chi2" if small else "jensen_shannon"


# --------------------------------------------------------------------------- numeric


def psi(bin_edges: Sequence[float], reference_counts: Sequence[int], current: np.ndarray) -> float:
    """Population stability index of ``current`` against the reference's bins.

    The outer bins are open (values below the first or above the last edge
    count in them); empty bins get ``PSI_EPSILON`` before the logarithm.
    """
    edges = np.asarray(bin_edges, dtype=np.float64)
    ref = np.asarray(reference_counts, dtype=np.float64)
    values = _finite(current)
    if not len(values) or ref.sum() == 0:
        return math.nan
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(ref) - 1)
    cur = np.bincount(index, minlength=len(ref)).astype(np.float64)
    p = np.maximum(ref / ref.sum(), PSI_EPSILON)
    q = np.maximum(cur / cur.sum(), PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(reference_sorted: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and its asymptotic p-value (``scipy.stats.ks_2samp(method="asymp")``).

    ``reference_sorted`` is sorted once per model version; each window costs one
    sort of its own values and two ``searchsorted`` passes.
    """
    from scipy.stats import kstwo

    a = reference_sorted
    b = np.sort(_finite(current))
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return math.nan, math.nan
    both = np.concatenate([a, b])
    cdf1 = np.searchsorted(a, both, side="right") / n1
    cdf2 = np.searchsorted(b, both, side="right") / n2
    statistic = float(np.max(np.abs(cdf1 - cdf2)))
    en = n1 * n2 / (n1 + n2)
    p_value = float(np.clip(kstwo.sf(statistic, np.round(en)), 0.0, 1.0))
    return statistic, p_value


def wasserstein(reference_sorted: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein-1 distance between the samples (``scipy.stats.wasserstein_distance``)."""
    a = reference_sorted
    b = np.sort(_finite(current))
    if not len(a) or not len(b):
        return math.nan
    both = np.sort(np.concatenate([a, b]))
    deltas = np.diff(both)
    cdf_a = np.searchsorted(a, both[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, both[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * deltas))


def normalised_wasserstein(reference_sorted: np.ndarray, current: np.ndarray, reference_std: float) -> float:
    """Wasserstein distance in units of the reference's standard deviation (scale-free thresholds)."""
    distance = wasserstein(reference_sorted, current)
    return distance / reference_std if reference_std > 0 else (0.0 if distance == 0 else math.inf)


# --------------------------------------------------------------------------- categorical


def frequency_table(
    reference: Mapping[str, int], current_values: Sequence[object]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Counts over the union of categories (unseen live categories get their own column)."""
    current: dict[str, int] = {}
    for value in current_values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        key = str(value)
        current[key] = current.get(key, 0) + 1
    categories = sorted(set(reference) | set(current))
    ref = np.array([reference.get(c, 0) for c in categories], dtype=np.float64)
    cur = np.array([current.get(c, 0) for c in categories], dtype=np.float64)
    return categories, ref, cur


def chi2(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of independence of the 2×k table (``chi2_contingency(correction=False)``).

    Categories absent from both rows are dropped (they carry no information and
    would give a zero expected count).
    """
    from scipy.stats import chi2 as chi2_distribution

    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return statistic, float(chi2_distribution.sf(statistic, dof))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) of two frequency vectors, as SciPy's ``jensenshannon``."""
    p = np.asarray(reference_counts, dtype=np.float64)
    q = np.asarray(current_counts, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log(x[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


# --------------------------------------------------------------------------- multiple testing


def corrected(p_values: Sequence[float], method: str) -> list[float]:
    """P-values adjusted for testing many features at once.

    ``bonferroni``: p × m (capped at 1). ``benjamini_hochberg``: the step-up
    false-discovery-rate adjustment (``scipy.stats.false_discovery_control``).
    ``none`` leaves them as they are. NaN p-values are left out of m.
    """
    values = np.asarray(p_values, dtype=np.float64)
    finite = np.isfinite(values)
    m = int(finite.sum())
    out = values.copy()
    if method == "none" or m == 0:
        return out.tolist()
    if method == "bonferroni":
        out[finite] = np.minimum(values[finite] * m, 1.0)
        return out.tolist()
    if method != "benjamini_hochberg":
        raise ConfigError(f"unknown correction {method!r}; choose none, bonferroni or benjamini_hochberg")
    p = values[finite]
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    result = np.empty(m)
    result[order] = adjusted
    out[finite] = result
    return out.tolist()


def _finite(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]
