"""Content digests: order-independent, additive, sensitive to every value."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from raymlops.data import generate_demo_data
from raymlops.data._digest import RowSums, key_hashes, row_hashes, row_sums, schema_fingerprint


def _digest(table: pa.Table) -> str:
    return row_sums(table).digest(schema_fingerprint(table.schema))


def test_same_rows_in_any_order_give_one_digest():
    table = generate_demo_data(500, seed=1)
    shuffled = table.take(pa.array(list(range(499, -1, -1))))
    assert _digest(table) == _digest(shuffled)


def test_one_changed_value_changes_the_digest():
    table = generate_demo_data(500, seed=1)
    ages = table.column("age").to_pylist()
    ages[123] += 1
    changed = table.set_column(table.schema.get_field_index("age"), "age", pa.array(ages))
    assert _digest(table) != _digest(changed)


def test_a_duplicated_row_changes_the_digest():
    table = generate_demo_data(100, seed=1)
    assert _digest(table) != _digest(pa.concat_tables([table, table.slice(0, 1)]))


def test_dtype_is_part_of_the_digest():
    table = pa.table({"x": pa.array([1, 2, 3], pa.int64())})
    assert _digest(table) != _digest(table.cast(pa.schema([("x", pa.int32())])))


def test_sums_are_additive_over_batches():
    table = generate_demo_data(300, seed=2)
    parts = row_sums(table.slice(0, 100)) + row_sums(table.slice(100, 150)) + row_sums(table.slice(250))
    assert parts == row_sums(table)
    assert RowSums() + parts == parts


def test_digest_is_stable_across_processes():
    code = (
        "from raymlops.data import generate_demo_data;"
        "from raymlops.data._digest import row_sums, schema_fingerprint;"
        "t = generate_demo_data(200, seed=5);"
        "print(row_sums(t).digest(schema_fingerprint(t.schema)))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == _digest(generate_demo_data(200, seed=5))


def _reference_hashes(table: pa.Table, hash_key: str) -> np.ndarray:
    """The digest's definition: pandas' row hash of a frame whose dtypes follow the Arrow types."""
    columns: dict[str, np.ndarray] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_floating(kind):
            columns[name] = column.to_numpy(zero_copy_only=False).astype(np.float64)
        elif pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_temporal(kind):
            as_int = pc.fill_null(column.cast(pa.int64()), np.iinfo(np.int64).min)
            columns[name] = as_int.to_numpy(zero_copy_only=False)
        else:
            text = column.cast(pa.string()) if not pa.types.is_string(kind) else column
            columns[name] = pc.fill_null(text, "\x00raymlops-null\x00").to_numpy(zero_copy_only=False)
    frame = pd.DataFrame(columns, copy=False)
    return pd.util.hash_pandas_object(frame, index=False, hash_key=hash_key).to_numpy(np.uint64)


def _with_nulls(table: pa.Table, every: int) -> pa.Table:
    keep = pa.array([i % every != 0 for i in range(table.num_rows)])
    columns = [pc.if_else(keep, column, pa.scalar(None, column.type)) for column in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


@pytest.mark.parametrize("nulls_every", [0, 3])
def test_row_hashes_equal_pandas_hash_of_the_stable_frame(nulls_every):
    table = generate_demo_data(2_000, seed=3)
    table = table.append_column("flag", pa.array([i % 2 == 0 for i in range(table.num_rows)]))
    table = table.append_column("count", pa.array(range(table.num_rows), pa.int32()))
    codes = pa.array([f"c{i % 7}" for i in range(table.num_rows)]).dictionary_encode()
    table = table.append_column("code", codes)  # few distinct values: hashed per distinct value
    text = pa.array([f"t{i}é" for i in range(table.num_rows)], pa.large_string())
    table = table.append_column("text", text)  # all distinct: hashed row by row
    if nulls_every:
        table = _with_nulls(table, nulls_every)
    chunked = pa.concat_tables([table.slice(0, 700), table.slice(700)])  # hashes must not see chunks
    h1, h2 = row_hashes(chunked)
    assert np.array_equal(h1, _reference_hashes(table, "raymlops-rows-k1"))
    assert np.array_equal(h2, _reference_hashes(table, "raymlops-rows-k2"))
    assert not np.array_equal(h1, h2)


def test_key_hashes_equal_a_one_column_row_hash():
    ids = pa.array([f"id-{i}" if i % 5 else None for i in range(500)])
    expected = _reference_hashes(pa.table({"id": ids}), "split00000000007")
    assert np.array_equal(key_hashes(ids, "split00000000007"), expected)
    big = pa.array(np.array([2**64 - 1, 0, 2**63], dtype=np.uint64))
    as_frame = pd.util.hash_pandas_object(pd.DataFrame({"h": big.to_numpy()}), index=False, hash_key="k" * 16)
    assert np.array_equal(key_hashes(big, "k" * 16), as_frame.to_numpy(np.uint64))
