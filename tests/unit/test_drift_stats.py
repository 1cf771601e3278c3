"""Drift statistics agree with SciPy on random inputs (property-based; tolerances stated per test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from raymlops.errors import ConfigError
from raymlops.monitor import (
    chi2,
    corrected,
    default_test,
    frequency_table,
    get_test,
    jensen_shannon,
    ks,
    psi,
    wasserstein,
)

TOL = 1e-9

samples = st.tuples(st.integers(0, 2**32 - 1), st.integers(5, 400), st.integers(5, 400), st.floats(-1.0, 1.0))


def _pair(seed: int, n1: int, n2: int, shift: float, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, n1), rng.normal(shift, 1.3, n2)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b


@settings(max_examples=80, deadline=None)
@given(params=samples, ties=st.booleans())
def test_ks_matches_scipy(params, ties):
    a, b = _pair(*params, ties=ties)
    statistic, p_value = ks(np.sort(a), b)
    expected = stats.ks_2samp(a, b, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=TOL)
    assert p_value == pytest.approx(expected.pvalue, abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(params=samples, ties=st.booleans())
def test_wasserstein_matches_scipy(params, ties):
    a, b = _pair(*params, ties=ties)
    assert wasserstein(np.sort(a), b) == pytest.approx(stats.wasserstein_distance(a, b), abs=TOL)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 8), unseen=st.booleans())
def test_chi2_matches_scipy_chi2_contingency(seed, k, unseen):
    rng = np.random.default_rng(seed)
    categories = [f"c{i}" for i in range(k)]
    reference = {c: int(n) for c, n in zip(categories, rng.integers(5, 200, k), strict=True)}
    live = list(rng.choice(categories + (["new"] if unseen else []), size=int(rng.integers(30, 300))))
    names, ref, cur = frequency_table(reference, live)
    statistic, p_value = chi2(ref, cur)
    table = np.vstack([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    expected = stats.chi2_contingency(table, correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-9, abs=TOL)
    assert p_value == pytest.approx(expected.pvalue, abs=TOL)
    assert ("new" in names) == (unseen and "new" in live)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 10))
def test_jensen_shannon_matches_scipy(seed, k):
    rng = np.random.default_rng(seed)
    p, q = rng.integers(0, 50, k).astype(float), rng.integers(0, 50, k).astype(float)
    p[0] += 1
    q[-1] += 1
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q), abs=TOL)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 100_000)
    edges = np.quantile(reference, np.linspace(0, 1, 11))
    counts, _ = np.histogram(reference, bins=edges)
    assert psi(edges, counts, rng.normal(0, 1, 50_000)) < 0.01
    shifted = [psi(edges, counts, rng.normal(s, 1, 50_000)) for s in (0.25, 0.5, 1.0)]
    assert shifted == sorted(shifted) and shifted[1] > 0.2  # 0.5 std: past the usual 0.2 alarm
    # by hand: two bins, 50/50 reference, 80/20 live
    assert psi([0.0, 0.5, 1.0], [50, 50], np.array([0.1] * 80 + [0.9] * 20)) == pytest.approx(
        (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5), abs=TOL
    )


@settings(max_examples=60, deadline=None)
@given(p=st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=1, max_size=30))
def test_corrections_match_scipy(p):
    values = np.array(p)
    finite = np.isfinite(values)
    bh = np.array(corrected(p, "benjamini_hochberg"))
    bonferroni = np.array(corrected(p, "bonferroni"))
    assert np.isnan(bh[~finite]).all() and np.isnan(bonferroni[~finite]).all()
    if finite.any():
        expected = stats.false_discovery_control(values[finite], method="bh")
        np.testing.assert_allclose(bh[finite], expected, atol=1e-12)
        np.testing.assert_allclose(
            bonferroni[finite], np.minimum(values[finite] * finite.sum(), 1), atol=1e-12
        )
    assert corrected(p, "none") == pytest.approx(p, nan_ok=True)


def test_unknown_tests_list_the_valid_ones_and_defaults_follow_evidently():
    with pytest.raises(ConfigError, match="valid tests: psi, ks, wasserstein"):
        get_test("chi2", "numeric")
    with pytest.raises(ConfigError, match="unknown drift test 'kolmogorov'"):
        get_test("kolmogorov")
    assert (default_test("numeric", 500), default_test("numeric", 50_000)) == ("ks", "wasserstein")
    assert (default_test("categorical", 500), default_test("categorical", 50_000)) == (
        "chi2",
        "jensen_shannon",
    )


def test_config_and_registry_agree_on_the_tests(make_config):
    from raymlops.config import DRIFT_TESTS
    from raymlops.monitor import TESTS

    for kind, names in DRIFT_TESTS.items():
        assert {t.name for t in TESTS.values() if kind in t.kinds} == set(names)
    with pytest.raises(
        ConfigError, match=r"monitoring.tests.age: .*'chi2' is not a drift test for a numeric"
    ):
        make_config(monitoring={"tests": {"age": "chi2"}})
    with pytest.raises(ConfigError, match="did you mean 'ks'"):
        make_config(monitoring={"tests": {"age": "kss"}})
