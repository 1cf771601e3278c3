"""A built-in demo dataset: customer churn, with knobs to make it drift.

Tabular binary classification with 9 numeric and 3 categorical features, an
id, a timestamp and a noisy but learnable label. ``shift`` moves chosen numeric
features by a number of their standard deviations (covariate shift);
``concept_shift`` changes how features relate to the label. The demo, the
tests and the benchmarks all draw from here, so they agree on the data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

NUMERIC = (
    "age",
    "income_k",
    "tenure_months",
    "num_purchases",
    "avg_basket",
    "days_since_last",
    "support_calls",
    "discount_rate",
    "session_minutes",
)
CATEGORICAL = {
    "region": ("north", "south", "east", "west"),
    "plan": ("basic", "standard", "premium"),
    "channel": ("web", "app", "store"),
}
NOISE_FEATURE = "session_minutes"  # carries no signal: explainability tests rely on it


def generate(
    num_rows: int,
    *,
    seed: int = 0,
    shift: Mapping[str, float] | None = None,
    concept_shift: float = 0.0,
    start: dt.datetime | None = None,
    id_offset: int = 0,
) -> pa.Table:
    """Generate ``num_rows`` rows of churn data as an Arrow table.

    Args:
        num_rows: rows to generate.
        seed: the same seed gives the same rows.
        shift: feature → shift in units of that feature's standard deviation.
        concept_shift: 0 keeps the label relationship; 1 flips the sign of the
            two strongest effects (a model trained before becomes wrong).
        start: timestamp of the first row (rows are one second apart).
        id_offset: first customer number, so batches can have distinct ids.

    Example:
        >>> generate(3, seed=1).num_rows
        3
    """
    shift = dict(shift or {})
    unknown = set(shift) - set(NUMERIC)
    if unknown:
        raise ValueError(f"cannot shift {sorted(unknown)}; numeric features: {', '.join(NUMERIC)}")
    rng = np.random.default_rng(seed)
    n = num_rows
    cols: dict[str, np.ndarray] = {
        "age": np.clip(rng.normal(42, 12, n), 18, 90).round(0),
        "income_k": np.exp(rng.normal(4.0, 0.45, n)).round(2),
        "tenure_months": rng.gamma(2.0, 14.0, n).round(1),
        "num_purchases": rng.poisson(6, n).astype(np.float64),
        "avg_basket": rng.gamma(3.0, 18.0, n).round(2),
        "days_since_last": rng.exponential(20.0, n).round(1),
        "support_calls": rng.poisson(1.2, n).astype(np.float64),
        "discount_rate": rng.beta(2.0, 8.0, n).round(4),
        "session_minutes": rng.gamma(2.5, 6.0, n).round(1),
    }
    for name, k in shift.items():
        cols[name] = cols[name] + k * cols[name].std()
    cats = {name: rng.choice(np.array(values), size=n) for name, values in CATEGORICAL.items()}

    def standard(name: str) -> np.ndarray:
        return (cols[name] - _REFERENCE_MEAN[name]) / _REFERENCE_STD[name]

    flip = 1.0 - 2.0 * concept_shift
    logit = (
        -0.4
        + 1.3 * flip * standard("days_since_last")
        - 1.1 * flip * standard("tenure_months")
        + 0.7 * standard("support_calls")
        - 0.5 * standard("num_purchases")
        - 0.3 * standard("income_k")
        - 0.4 * standard("discount_rate")
        + 0.2 * standard("age")
        + np.select([cats["plan"] == "basic", cats["plan"] == "premium"], [0.6, -0.6], 0.0)
        + np.where(cats["channel"] == "store", -0.4, 0.0)
        + np.where(cats["region"] == "south", 0.25, 0.0)
    )
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < prob).astype(np.int64)

    start = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    times = np.datetime64(start.replace(tzinfo=None), "us") + np.arange(n) * np.timedelta64(1, "s")
    arrays = {name: pa.array(cols[name]) for name in NUMERIC}
    arrays.update({name: pa.array(cats[name]) for name in CATEGORICAL})
    arrays["churned"] = pa.array(label)
    arrays["customer_id"] = pa.array([f"c{id_offset + i:09d}" for i in range(n)])
    arrays["event_time"] = pa.array(times, type=pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(arrays)


# Population moments of the unshifted generator (from 1M rows, seed 0), so the
# label relationship stays fixed when features are shifted: shifted rows look
# unusual to the model instead of being re-standardised away.
_REFERENCE_MEAN = {
    "age": 42.11,
    "income_k": 60.43,
    "tenure_months": 27.97,
    "num_purchases": 6.0,
    "avg_basket": 54.03,
    "days_since_last": 19.97,
    "support_calls": 1.2,
    "discount_rate": 0.2,
    "session_minutes": 15.0,
}
_REFERENCE_STD = {
    "age": 11.77,
    "income_k": 28.62,
    "tenure_months": 19.79,
    "num_purchases": 2.45,
    "avg_basket": 31.21,
    "days_since_last": 19.93,
    "support_calls": 1.09,
    "discount_rate": 0.121,
    "session_minutes": 9.48,
}


def demo_schema() -> dict[str, object]:
    """The ``data.schema`` section that describes ``generate``'s output (for configs and tests)."""
    features: list[dict[str, object]] = [
        {"name": "age", "kind": "numeric", "min": 18, "max": 90},
        {"name": "income_k", "kind": "numeric", "min": 0},
        {"name": "tenure_months", "kind": "numeric", "min": 0},
        {"name": "num_purchases", "kind": "numeric", "min": 0},
        {"name": "avg_basket", "kind": "numeric", "min": 0},
        {"name": "days_since_last", "kind": "numeric", "min": 0},
        {"name": "support_calls", "kind": "numeric", "min": 0},
        {"name": "discount_rate", "kind": "numeric", "min": 0, "max": 1},
        {"name": "session_minutes", "kind": "numeric", "min": 0},
    ]
    features += [
        {"name": name, "kind": "categorical", "dtype": "string", "allowed": list(values)}
        for name, values in CATEGORICAL.items()
    ]
    return {
        "features": features,
        "label": {"name": "churned", "dtype": "int64", "classes": [0, 1]},
        "id_column": "customer_id",
        "time_column": "event_time",
        "slice_columns": ["plan", "region"],
        "sensitive_columns": ["region"],
    }
