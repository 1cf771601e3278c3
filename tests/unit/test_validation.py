"""Row-level schema rules on Arrow batches (no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from raymlops.config import parse_config
from raymlops.data._schema import (
    ERRORS_COLUMN,
    RAW_COLUMN,
    coerce,
    column_rules,
    mark_duplicates,
    missing_columns,
    validate_batch,
)
from tests.conftest import demo_raw_config


@pytest.fixture
def rules(tmp_path):
    return column_rules(parse_config(demo_raw_config(tmp_path)).data.schema)


def _rows(n: int = 4) -> dict[str, list]:
    from raymlops.data import generate_demo_data

    return generate_demo_data(n, seed=3).to_pydict()


def _errors(out: pa.Table) -> list:
    return out.column(ERRORS_COLUMN).to_pylist()


def test_clean_rows_have_no_errors(rules):
    out = validate_batch(pa.table(_rows()), rules)
    assert _errors(out) == [None] * 4
    assert out.column(RAW_COLUMN).null_count == 4


def test_each_rule_is_named_per_row(rules):
    rows = _rows()
    rows["age"] = ["40", "abc", "200", "30"]  # type, range
    rows["plan"] = ["basic", "gold", "premium", None]  # category, null
    rows["churned"] = [0, 1, 1, 2]  # label class
    out = validate_batch(pa.table(rows), rules)
    assert _errors(out) == [
        None,
        ["type:age", "category:plan"],
        ["range:age"],
        ["null:plan", "category:churned"],
    ]
    raw = json.loads(out.column(RAW_COLUMN)[1].as_py())
    assert raw["age"] == "abc" and raw["plan"] == "gold"  # the row as read, not as coerced


def test_output_has_canonical_types(rules):
    rows = _rows()
    rows["age"] = [40, 41, 42, 43]  # ints where floats are declared
    out = validate_batch(pa.table(rows), rules)
    assert out.schema.field("age").type == pa.float64()
    assert out.schema.field("event_time").type == pa.timestamp("us", tz="UTC")


def test_nan_is_missing_and_inf_is_not_finite(rules):
    rows = _rows()
    rows["income_k"] = [float("nan"), float("inf"), 1.0, 2.0]
    out = validate_batch(pa.table(rows), rules)
    assert _errors(out)[0] == ["null:income_k"]
    assert "non_finite:income_k" in _errors(out)[1]


def test_missing_columns_split_required_and_optional(rules):
    required, optional = missing_columns(["age", "plan"], rules)
    assert "churned" in required and "region" in required and optional == []


def test_duplicates_mark_every_occurrence(rules):
    rows = _rows()
    rows["customer_id"] = ["a", "b", "a", "c"]
    out = validate_batch(pa.table(rows), rules)
    out = mark_duplicates(out, "customer_id", pa.array(["a"]))
    assert _errors(out) == [["duplicate_id:customer_id"], None, ["duplicate_id:customer_id"], None]
    assert json.loads(out.column(RAW_COLUMN)[0].as_py())["customer_id"] == "a"


@pytest.mark.parametrize(
    ("values", "dtype", "bad"),
    [
        (["1", "2.5", "x", None], "float64", [False, False, True, False]),
        (["1", "2.5", "3", None], "int64", [False, True, False, False]),
        ([1.0, 2.0, 1e30, None], "int32", [False, False, True, False]),
        (["true", "no", "maybe", None], "bool", [False, False, True, False]),
        (
            ["2024-01-01T00:00:00Z", "2024-02-30", "2024-03-01", None],
            "timestamp",
            [False, True, False, False],
        ),
        ([1, 2, 3, None], "string", [False, False, False, False]),
    ],
)
def test_coerce_finds_exactly_the_bad_values(values, dtype, bad):
    out, mask = coerce(pa.array(values), dtype)
    assert mask.tolist() == bad
    assert out.null_count == sum(bad) + 1  # bad values and the original null


def test_coerce_fast_path_keeps_values():
    out, mask = coerce(pa.array([1, 2, 3]), "float64")
    assert out.to_pylist() == [1.0, 2.0, 3.0] and not mask.any()
    assert isinstance(mask, np.ndarray)
