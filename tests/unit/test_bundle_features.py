"""The NumPy feature path of the Predictor is bit-identical to Ray's ``transform_batch``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ray.data.preprocessors import (
    Chain,
    Concatenator,
    MinMaxScaler,
    OneHotEncoder,
    SimpleImputer,
    StandardScaler,
)

from raymlops.bundle import compile_features


def _fitted(step, stats):
    step.stats_ = stats
    step._fitted = True
    return step


def _chain(scaler: str):
    numeric = ["a", "b", "c"]
    steps = [_fitted(SimpleImputer(["b"], strategy="mean"), {"mean(b)": 2.5})]
    if scaler == "standard":
        stats = {"mean(a)": 10.0, "std(a)": 3.0, "mean(b)": 2.5, "std(b)": 0.5, "mean(c)": 7.0, "std(c)": 0.0}
        steps.append(_fitted(StandardScaler(numeric), stats))
    else:
        stats = {"min(a)": 1.0, "max(a)": 30.0, "min(b)": 0.0, "max(b)": 4.0, "min(c)": 7.0, "max(c)": 7.0}
        steps.append(_fitted(MinMaxScaler(numeric), stats))
    steps.append(
        _fitted(
            OneHotEncoder(["plan", "region"]),
            {
                "unique_values(plan)": {"basic": 0, "premium": 1, "standard": 2},
                "unique_values(region)": {"east": 0, "north": 1},
            },
        )
    )
    steps.append(
        Concatenator(
            columns=[*numeric, "plan", "region"],
            output_column_name="features",
            dtype=np.float32,
            flatten=True,
        )
    )
    return Chain(*steps)


@pytest.mark.parametrize("scaler", ["standard", "minmax"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_features_equal_ray_transform_batch(scaler, seed):
    rng = np.random.default_rng(seed)
    n = 257
    frame = pd.DataFrame(
        {
            "a": rng.normal(10, 3, n),
            "b": np.where(rng.random(n) < 0.2, np.nan, rng.normal(2, 1, n)),
            "c": np.full(n, 7.0),
            "plan": rng.choice(["basic", "premium", "standard", "gold"], n),  # gold: unseen → all zeros
            "region": rng.choice(["east", "north"], n),
        }
    )
    chain = _chain(scaler)
    fast = compile_features(chain)
    assert fast is not None
    expected = np.stack(chain.transform_batch(frame.copy())["features"].to_numpy()).astype(np.float32)
    got = fast(frame)
    assert got.dtype == np.float32 and got.shape == expected.shape == (n, 8)
    np.testing.assert_array_equal(got, expected)


def test_unknown_steps_keep_rays_path(monkeypatch):
    from ray.data.preprocessors import Normalizer

    chain = Chain(Normalizer(["a"]), Concatenator(columns=["a"], output_column_name="features"))
    assert compile_features(chain) is None
    monkeypatch.setenv("RAYMLOPS_RAY_PREPROCESSING", "1")
    assert compile_features(_chain("standard")) is None
