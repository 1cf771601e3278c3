"""Content digests: order-independent, additive, sensitive to every value."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa

from raymlops.data import generate_demo_data
from raymlops.data._digest import RowSums, row_sums, schema_fingerprint


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
