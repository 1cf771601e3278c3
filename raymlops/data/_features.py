"""The fitted preprocessing chain compiled to NumPy, shared by training and prediction.

Ray's preprocessors convert pandas → Arrow → pandas at every step of
``transform_batch``, which dominated a small request's time when serving and a
fit's encoding time (figures in ``benchmarks/README.md``); the compiled chain
gives the same float32 features bit for bit (``tests/unit/test_bundle_features.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

ENV_SLOW_FEATURES = "RAYMLOPS_RAY_PREPROCESSING"  # set to 1 to keep Ray's transform_batch everywhere


_EPSILON = 1e-8  # Ray's scalers treat a smaller spread as 1


def compile_features(preprocessor: Any) -> Callable[[pd.DataFrame], np.ndarray] | None:
    """The fitted preprocessing chain as plain NumPy: raw frame → float32 feature matrix.

    Ray's ``transform_batch`` converts pandas → Arrow → pandas at every step,
    most of a small request's time when serving. This
    reads the fitted statistics once and applies the same arithmetic in float64
    before the same float32 cast, so the features are bit-identical
    (``tests/unit/test_bundle_features.py``). Returns None for a chain with a
    step it does not know; the caller then keeps Ray's path.
    """
    from ray.data.preprocessors import (
        Chain,
        Concatenator,
        MinMaxScaler,
        OneHotEncoder,
        SimpleImputer,
        StandardScaler,
    )

    steps = list(preprocessor.preprocessors) if isinstance(preprocessor, Chain) else [preprocessor]
    if not steps or not isinstance(steps[-1], Concatenator) or os.environ.get(ENV_SLOW_FEATURES):
        return None
    fills: dict[str, Any] = {}
    affine: dict[str, tuple[float, float]] = {}  # column -> (offset, scale): (x - offset) / scale
    onehot: dict[str, dict[Any, int]] = {}
    for step in steps[:-1]:
        if isinstance(step, SimpleImputer) and step._strategy in ("mean", "most_frequent", "constant"):
            for column in step._columns:
                fills[column] = step._get_fill_value(column)
        elif isinstance(step, StandardScaler):
            for column in step._columns:
                mean, std = step.stats_[f"mean({column})"], step.stats_[f"std({column})"]
                affine[column] = (mean, std if std >= _EPSILON else 1.0)
        elif isinstance(step, MinMaxScaler):
            for column in step._columns:
                low, high = step.stats_[f"min({column})"], step.stats_[f"max({column})"]
                affine[column] = (low, (high - low) if high - low >= _EPSILON else 1.0)
        elif isinstance(step, OneHotEncoder):
            for column in step._columns:
                onehot[column] = dict(step.stats_[f"unique_values({column})"])
        else:
            return None
        if any(o != c for o, c in zip(step._output_columns, step._columns, strict=True)):
            return None  # renamed outputs: keep Ray's path
    concat = steps[-1]
    if any(value is None for value, _ in affine.values()):
        return None
    columns = list(concat.columns)
    widths = [len(onehot[c]) if c in onehot else 1 for c in columns]

    def transform(frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), sum(widths)), dtype=np.float32)
        at = 0
        for column, width in zip(columns, widths, strict=True):
            values = frame[column]
            if column in fills:
                values = values.fillna(fills[column])
            if column in onehot:
                lookup = onehot[column]
                codes = np.fromiter(
                    (lookup.get(v, -1) for v in values.tolist()), dtype=np.int64, count=len(values)
                )
                hit = np.flatnonzero(codes >= 0)
                out[hit, at + codes[hit]] = 1.0
            else:
                x = values.to_numpy(dtype=np.float64, na_value=np.nan)
                if column in affine:
                    offset, scale = affine[column]
                    x = (x - offset) / scale
                out[:, at] = x.astype(np.float32)
            at += width
        return out

    return transform
