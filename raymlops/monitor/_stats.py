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
    return _psi(ref, np.bincount(index, minlength=len(ref)).astype(np.float64))


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    p = np.maximum(ref / ref.sum(), PSI_EPSILON)
    q = np.maximum(cur / cur.sum(), PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(reference_sorted: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and its asymptotic p-value (``scipy.stats.ks_2samp(method="asymp")``).

    ``reference_sorted`` is sorted once per model version; the window is sorted
    once here (``ks_sorted`` takes an already sorted window).
    """
    return ks_sorted(reference_sorted, np.sort(_finite(current)))


def ks_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """KS on two sorted, finite samples in O(len(a) · log len(b)): the window is never merged.

    Between two reference points the reference CDF is flat and the window's
    rises, so the largest gap sits at a reference point or just before one:
    ``|F1(a_i) - F2(a_i)|`` and ``|F1(a_i-) - F2(a_i-)|``, with the window's
    counts found by binary search. The same maximum as SciPy's scan over the
    merged samples.
    """
    from scipy.stats import kstwo

    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return math.nan, math.nan
    at = np.searchsorted(a, a, side="right") / n1 - np.searchsorted(b, a, side="right") / n2
    before = np.searchsorted(a, a, side="left") / n1 - np.searchsorted(b, a, side="left") / n2
    statistic = float(max(np.max(np.abs(at)), np.max(np.abs(before))))
    en = n1 * n2 / (n1 + n2)
    p_value = float(np.clip(kstwo.sf(statistic, np.round(en)), 0.0, 1.0))
    return statistic, p_value


def wasserstein(reference_sorted: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein-1 distance between the samples (``scipy.stats.wasserstein_distance``)."""
    return wasserstein_sorted(reference_sorted, np.sort(_finite(current)))


def wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """W1 of two sorted, finite samples: ∫|F1 − F2| over the merged points, without a second sort.

    The reference points are inserted into the sorted window at their binary-
    search positions (one copy, not a sort of the union); both CDFs then come
    from one cumulative count of reference points along the merged array.
    """
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return math.nan
    positions = np.searchsorted(b, a, side="left") + np.arange(n1)
    merged = np.insert(b, positions - np.arange(n1), a)
    is_ref = np.zeros(len(merged), dtype=np.int64)
    is_ref[positions] = 1
    ref_count = np.cumsum(is_ref)  # reference points at or before each merged point
    cur_count = np.arange(1, len(merged) + 1) - ref_count
    gaps = np.abs(ref_count[:-1] * (1.0 / n1) - cur_count[:-1] * (1.0 / n2))
    return float(np.dot(gaps, np.diff(merged)))


def psi_sorted(
    bin_edges: Sequence[float], reference_counts: Sequence[int], current_sorted: np.ndarray
) -> float:
    """``psi`` on a sorted, finite window: bin counts from ``len(edges)`` binary searches."""
    edges = np.asarray(bin_edges, dtype=np.float64)
    ref = np.asarray(reference_counts, dtype=np.float64)
    if not len(current_sorted) or ref.sum() == 0:
        return math.nan
    cuts = np.searchsorted(current_sorted, edges[1:-1], side="left")
    cur = np.diff(np.concatenate([[0], cuts, [len(current_sorted)]])).astype(np.float64)
    return _psi(ref, cur)


def numeric_statistics(
    reference_sorted: np.ndarray,
    bin_edges: Sequence[float],
    reference_counts: Sequence[int],
    reference_std: float,
    current: np.ndarray,
    tests: Sequence[str],
) -> dict[str, tuple[float, float | None]]:
    """Several numeric tests on one window column with a single sort: test → (statistic, p-value)."""
    values = np.sort(_finite(current))
    out: dict[str, tuple[float, float | None]] = {}
    for name in tests:
        if name == "psi":
            out[name] = (psi_sorted(bin_edges, reference_counts, values), None)
        elif name == "ks":
            out[name] = ks_sorted(reference_sorted, values)
        elif name == "wasserstein":
            distance = wasserstein_sorted(reference_sorted, values)
            out[name] = (_normalise(distance, reference_std), None)
        else:
            get_test(name, "numeric")  # raises, listing the valid ones
    return out


def normalised_wasserstein(reference_sorted: np.ndarray, current: np.ndarray, reference_std: float) -> float:
    """Wasserstein distance in units of the reference's standard deviation (scale-free thresholds)."""
    return _normalise(wasserstein(reference_sorted, current), reference_std)


def _normalise(distance: float, reference_std: float) -> float:
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
