"""Schema rules applied to Arrow batches: coercion and row-level validation.

Pure pyarrow/NumPy so that it runs unchanged inside a Ray Data task, in a unit
test, and (later) on a serving request. Each function takes and returns an
Arrow table; rows are never dropped here, only marked, so the caller decides
between failing and quarantining.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.config import SchemaConfig

ERRORS_COLUMN = "_raymlops_errors"  # list<string> of "rule:column"; null for a valid row
RAW_COLUMN = "_raymlops_raw"  # the row as read, JSON, kept only for invalid rows

RULES = {
    "missing_column": "required column is missing from the input",
    "type": "value cannot be read as the declared dtype",
    "null": "null in a column that is not nullable",
    "non_finite": "infinite value in a numeric column",
    "range": "value outside the declared [min, max] range",
    "category": "value is not one of the allowed values",
    "duplicate_id": "id appears more than once in this input",
}

ARROW_TYPES: dict[str, pa.DataType] = {
    "float64": pa.float64(),
    "float32": pa.float32(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclasses.dataclass(frozen=True)
class ColumnRule:
    """Everything the validator needs to know about one column."""

    name: str
    dtype: str
    nullable: bool
    role: str  # feature | label | id | time | metadata
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.dtype]


def column_rules(schema: SchemaConfig, *, include_label: bool = True) -> tuple[ColumnRule, ...]:
    """The stored table's columns in a fixed order: features, metadata, label, id, time."""
    rules = [
        ColumnRule(f.name, f.dtype, f.nullable, "feature", f.min, f.max, f.allowed) for f in schema.features
    ]
    rules += [
        ColumnRule(c.name, c.dtype, c.nullable, "metadata", c.min, c.max, c.allowed)
        for c in schema.metadata_columns
    ]
    if include_label:
        label = schema.label
        rules.append(ColumnRule(label.name, label.dtype, False, "label", allowed=label.classes))
    if schema.id_column:
        rules.append(ColumnRule(schema.id_column, schema.id_dtype, False, "id"))
    if schema.time_column:
        rules.append(ColumnRule(schema.time_column, "timestamp", False, "time"))
    return tuple(rules)


def table_schema(rules: tuple[ColumnRule, ...]) -> pa.Schema:
    """The Arrow schema every write uses, so appends never disagree on types."""
    return pa.schema([pa.field(r.name, r.arrow_type, nullable=True) for r in rules])


def missing_columns(present: list[str], rules: tuple[ColumnRule, ...]) -> tuple[list[str], list[str]]:
    """Split absent columns into (required, optional); optional ones are filled with nulls."""
    absent = [r for r in rules if r.name not in present]
    return [r.name for r in absent if not r.nullable], [r.name for r in absent if r.nullable]


def coerce(values: pa.Array | pa.ChunkedArray, dtype: str) -> tuple[pa.Array, np.ndarray]:
    """Cast ``values`` to ``dtype``; return the result and a mask of values that could not be cast.

    The fast path is one vectorised Arrow cast. Only when it fails (a batch with
    a bad value) does a slower per-column fallback find which rows are bad.
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    target = ARROW_TYPES[dtype]
    ok = np.zeros(len(arr), dtype=bool)
    if arr.type == target:
        return arr, ok
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target), ok
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    try:
        return pc.cast(arr, target, safe=True), ok
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    return _coerce_slow(arr, dtype)


def _coerce_slow(arr: pa.Array, dtype: str) -> tuple[pa.Array, np.ndarray]:
    import pandas as pd

    target = ARROW_TYPES[dtype]
    series = pd.Series(arr.to_pylist(), dtype=object)
    present = series.notna().to_numpy()
    if dtype in ("float64", "float32", "int64", "int32"):
        numbers = pd.to_numeric(series, errors="coerce").astype("float64")
        bad = present & numbers.isna().to_numpy()
        if dtype.startswith("int"):
            info = np.iinfo(np.int64 if dtype == "int64" else np.int32)
            vals = numbers.to_numpy()
            with np.errstate(invalid="ignore"):
                not_int = ~np.isnan(vals) & ((vals % 1 != 0) | (vals < info.min) | (vals > info.max))
            bad |= not_int
        cleaned = numbers.where(~pd.Series(bad), None)
        mask = cleaned.isna().to_numpy()
        result = pa.array(cleaned.fillna(0).to_numpy(), mask=mask).cast(target)
        return result, bad
    if dtype == "bool":
        text = series.map(lambda v: str(v).strip().lower() if v is not None else None)
        parsed = text.map(lambda v: True if v in _TRUE else False if v in _FALSE else None)
        bad = present & parsed.isna().to_numpy()
        return pa.array(parsed.tolist(), type=pa.bool_()), bad
    if dtype == "timestamp":
        stamps = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
        bad = present & stamps.isna().to_numpy()
        return pa.array(stamps, type=target, from_pandas=True), bad
    # string: anything can be written as text
    return pa.array([None if v is None else str(v) for v in series], type=target), np.zeros(len(arr), bool)


def validate_batch(batch: pa.Table, rules: tuple[ColumnRule, ...]) -> pa.Table:
    """Coerce every column to its declared dtype and mark each row's rule violations.

    Returns a table with exactly the ``rules`` columns (canonical types), plus
    ``ERRORS_COLUMN`` (list of ``rule:column``, null when valid) and
    ``RAW_COLUMN`` (the input row as JSON, only for invalid rows).
    """
    num_rows = batch.num_rows
    columns: list[pa.Array] = []
    masks: list[np.ndarray] = []
    labels: list[str] = []

    def flag(mask: np.ndarray, rule: str, column: str) -> None:
        if mask.any():
            masks.append(mask)
            labels.append(f"{rule}:{column}")

    for rule in rules:
        if rule.name not in batch.column_names:
            columns.append(pa.nulls(num_rows, rule.arrow_type))
            continue
        values, bad_type = coerce(batch.column(rule.name), rule.dtype)
        flag(bad_type, "type", rule.name)
        if pa.types.is_floating(values.type):
            nan = _mask(pc.is_nan(values))
            if nan.any():  # NaN is how CSV and pandas spell "missing"
                values = pc.if_else(pa.array(nan), pa.scalar(None, values.type), values)
            flag(_mask(pc.is_inf(values)), "non_finite", rule.name)
        if not rule.nullable:
            flag(_mask(values.is_null()) & ~bad_type, "null", rule.name)
        if rule.min is not None or rule.max is not None:
            low = -np.inf if rule.min is None else rule.min
            high = np.inf if rule.max is None else rule.max
            inside = pc.and_(
                pc.greater_equal(values, pa.scalar(low, pa.float64())),
                pc.less_equal(values, pa.scalar(high, pa.float64())),
            )
            flag(~_mask(inside) & ~_mask(values.is_null()), "range", rule.name)
        if rule.allowed is not None:
            allowed = pa.array([_as_dtype(v, rule.dtype) for v in rule.allowed], type=rule.arrow_type)
            unknown = pc.invert(pc.is_in(values, value_set=allowed))
            flag(_mask(unknown) & ~_mask(values.is_null()), "category", rule.name)
        columns.append(values)

    out = pa.Table.from_arrays(columns, schema=table_schema(rules))
    errors, raw = _row_errors(batch, num_rows, masks, labels)
    return out.append_column(ERRORS_COLUMN, errors).append_column(RAW_COLUMN, raw)


def mark_duplicates(table: pa.Table, id_column: str, duplicated: pa.Array) -> pa.Table:
    """Add ``duplicate_id`` to rows whose id is in ``duplicated``, keeping earlier errors.

    Every occurrence is marked (not all but the first): which copy came first
    depends on block order, and the result must not.
    """
    hit = _mask(pc.is_in(table.column(id_column), value_set=duplicated))
    if not hit.any():
        return table
    errors = table.column(ERRORS_COLUMN).to_pylist()
    raw = table.column(RAW_COLUMN).to_pylist()
    values = table.drop_columns([ERRORS_COLUMN, RAW_COLUMN])
    for i in np.flatnonzero(hit):
        errors[i] = (errors[i] or []) + [f"duplicate_id:{id_column}"]
        if raw[i] is None:  # otherwise valid: its canonical values are what was read
            raw[i] = json.dumps(values.slice(int(i), 1).to_pylist()[0], default=str)
    return values.append_column(ERRORS_COLUMN, pa.array(errors, pa.list_(pa.string()))).append_column(
        RAW_COLUMN, pa.array(raw, pa.string())
    )


def _row_errors(
    batch: pa.Table, num_rows: int, masks: list[np.ndarray], labels: list[str]
) -> tuple[pa.Array, pa.Array]:
    if not masks:
        return pa.nulls(num_rows, pa.list_(pa.string())), pa.nulls(num_rows, pa.string())
    stacked = np.vstack(masks)
    bad_rows = np.flatnonzero(stacked.any(axis=0))
    errors: list[list[str] | None] = [None] * num_rows
    raw: list[str | None] = [None] * num_rows
    raw_rows = batch.take(pa.array(bad_rows)).to_pylist()
    for row_index, raw_row in zip(bad_rows, raw_rows, strict=True):
        errors[row_index] = [labels[j] for j in np.flatnonzero(stacked[:, row_index])]
        raw[row_index] = json.dumps(raw_row, default=str)
    return pa.array(errors, pa.list_(pa.string())), pa.array(raw, pa.string())


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a NumPy mask, nulls counted as False."""
    filled = pc.fill_null(values, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def _as_dtype(value: Any, dtype: str) -> Any:
    if dtype == "string":
        return str(value)
    if dtype.startswith("int"):
        return int(value)
    if dtype.startswith("float"):
        return float(value)
    return value
