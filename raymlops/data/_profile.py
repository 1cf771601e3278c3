"""The reference profile of the training split, the baseline for drift monitoring.

Computed once per data version (not per monitoring window) and stored with the
model, so the monitor compares live traffic against exactly what the model saw.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pyarrow as pa


@dataclasses.dataclass(frozen=True)
class NumericProfile:
    """One numeric column.

    ``bin_edges`` are the column's exact quantiles at ``0, 1/k, …, 1`` (ties
    merged), ``counts`` the rows per bin (the last bin closed on the right,
    like ``numpy.histogram``); ``sample`` is a seeded, sorted random sample for
    tests that need raw values (Kolmogorov–Smirnov, Wasserstein).
    """

    name: str
    num_rows: int
    num_nulls: int
    mean: float
    std: float
    min: float
    max: float
    bin_edges: tuple[float, ...]
    counts: tuple[int, ...]
    sample: tuple[float, ...] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class CategoricalProfile:
    """One categorical column: the count of every value seen (nulls apart)."""

    name: str
    num_rows: int
    num_nulls: int
    frequencies: tuple[tuple[str, int], ...] = dataclasses.field(repr=False)  # sorted by value


@dataclasses.dataclass(frozen=True)
class ReferenceProfile:
    """Profiles of every feature and the label of one training split."""

    num_rows: int
    numeric: tuple[NumericProfile, ...]
    categorical: tuple[CategoricalProfile, ...]

    def column(self, name: str) -> NumericProfile | CategoricalProfile:
        profiles: tuple[NumericProfile | CategoricalProfile, ...] = (*self.numeric, *self.categorical)
        for p in profiles:
            if p.name == name:
                return p
        raise KeyError(f"no profile for column {name!r}; profiled: {[p.name for p in profiles]}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        raw: dict[str, Any] = json.loads(text)
        numeric = tuple(
            NumericProfile(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()})  # type: ignore[arg-type]
            for p in raw["numeric"]
        )
        categorical = tuple(
            CategoricalProfile(
                name=p["name"],
                num_rows=p["num_rows"],
                num_nulls=p["num_nulls"],
                frequencies=tuple((str(k), int(c)) for k, c in p["frequencies"]),
            )
            for p in raw["categorical"]
        )
        return cls(num_rows=raw["num_rows"], numeric=numeric, categorical=categorical)


def numeric_profile(
    name: str, values: np.ndarray, *, num_bins: int, sample_size: int, seed: int
) -> NumericProfile:
    """Profile one numeric column (NaN counts as null)."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    num_nulls = int(len(values) - len(present))
    if len(present) == 0:
        return NumericProfile(
            name, len(values), num_nulls, float("nan"), float("nan"), float("nan"), float("nan"), (), (), ()
        )
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, num_bins + 1)))
    if len(edges) == 1:  # a constant column still needs one bin
        edges = np.array([edges[0], edges[0]])
    counts, _ = np.histogram(present, bins=edges)
    rng = np.random.default_rng(seed)
    take = min(sample_size, len(present))
    sample = np.sort(rng.choice(present, size=take, replace=False)) if take else np.empty(0)
    return NumericProfile(
        name=name,
        num_rows=len(values),
        num_nulls=num_nulls,
        mean=float(present.mean()),
        std=float(present.std(ddof=1)) if len(present) > 1 else 0.0,
        min=float(present.min()),
        max=float(present.max()),
        bin_edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
        sample=tuple(float(s) for s in sample),
    )


def categorical_profile(name: str, values: pa.Array | pa.ChunkedArray) -> CategoricalProfile:
    """Profile one categorical column; values are keyed by their text form."""
    import pyarrow.compute as pc

    counts = pc.value_counts(pc.drop_null(values)).to_pylist()
    freqs = sorted((str(item["values"]), int(item["counts"])) for item in counts)
    return CategoricalProfile(name, len(values), int(values.null_count), tuple(freqs))


def build_profile(
    table: pa.Table,
    numeric_columns: tuple[str, ...],
    categorical_columns: tuple[str, ...],
    *,
    num_bins: int,
    sample_size: int,
    seed: int,
) -> ReferenceProfile:
    """Profile the given columns of ``table``."""
    numeric = tuple(
        numeric_profile(
            name,
            table.column(name).to_numpy(zero_copy_only=False).astype(np.float64),
            num_bins=num_bins,
            sample_size=sample_size,
            seed=seed,
        )
        for name in numeric_columns
    )
    categorical = tuple(categorical_profile(name, table.column(name)) for name in categorical_columns)
    return ReferenceProfile(num_rows=table.num_rows, numeric=numeric, categorical=categorical)
