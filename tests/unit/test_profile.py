"""The reference profile against NumPy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raymlops.data._profile import ReferenceProfile, build_profile, categorical_profile, numeric_profile


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantile_edges_and_counts_match_numpy(seed):
    rng = np.random.default_rng(seed)
    values = rng.lognormal(size=5000)
    p = numeric_profile("x", values, num_bins=10, sample_size=100, seed=0)
    expected = np.quantile(values, np.linspace(0, 1, 11))
    np.testing.assert_allclose(p.bin_edges, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(p.counts, np.histogram(values, bins=expected)[0])
    assert sum(p.counts) == 5000
    assert p.mean == pytest.approx(values.mean()) and p.std == pytest.approx(values.std(ddof=1))
    assert p.min == values.min() and p.max == values.max()


def test_nulls_are_counted_not_binned():
    values = np.array([1.0, np.nan, 2.0, 3.0, np.nan])
    p = numeric_profile("x", values, num_bins=2, sample_size=10, seed=0)
    assert p.num_nulls == 2 and sum(p.counts) == 3 and p.num_rows == 5


def test_tied_edges_are_merged_and_constant_column_has_one_bin():
    values = np.array([0.0] * 90 + [1.0] * 10)
    p = numeric_profile("x", values, num_bins=10, sample_size=0, seed=0)
    assert p.bin_edges == tuple(np.unique(np.quantile(values, np.linspace(0, 1, 11))))
    assert len(p.bin_edges) == 3 and sum(p.counts) == 100
    c = numeric_profile("c", np.full(20, 7.0), num_bins=5, sample_size=5, seed=0)
    assert c.bin_edges == (7.0, 7.0) and c.counts == (20,)


def test_sample_is_bounded_seeded_and_sorted():
    values = np.arange(10_000, dtype=float)
    a = numeric_profile("x", values, num_bins=4, sample_size=500, seed=3)
    b = numeric_profile("x", values, num_bins=4, sample_size=500, seed=3)
    assert len(a.sample) == 500 and a.sample == b.sample and list(a.sample) == sorted(a.sample)
    assert set(a.sample) <= set(values)


def test_categorical_frequencies():
    p = categorical_profile("c", pa.array(["b", "a", "b", None, "c", "b"]))
    assert p.frequencies == (("a", 1), ("b", 3), ("c", 1)) and p.num_nulls == 1


def test_profile_json_round_trip():
    table = pa.table({"x": np.linspace(0, 1, 50), "c": ["u", "v"] * 25})
    profile = build_profile(table, ("x",), ("c",), num_bins=5, sample_size=10, seed=0)
    assert ReferenceProfile.from_json(profile.to_json()) == profile
    assert profile.column("c").frequencies == (("u", 25), ("v", 25))
    with pytest.raises(KeyError, match="profiled"):
        profile.column("nope")
