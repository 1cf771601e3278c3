"""Deterministic, id-stable split assignment (the per-batch function, no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raymlops.config import parse_config
from raymlops.data import generate_demo_data
from raymlops.data._prepare import _SPLIT, _assign_split
from raymlops.data._schema import column_rules, table_schema
from tests.conftest import demo_raw_config


def _split(
    table: pa.Table, tmp_path, seed: int = 42, id_column: str | None = "customer_id"
) -> dict[str, int]:
    schema = table_schema(column_rules(parse_config(demo_raw_config(tmp_path)).data.schema))
    out = _assign_split(table, id_column, seed, (0.7, 0.85), schema)
    return dict(zip(out.column("customer_id").to_pylist(), out.column(_SPLIT).to_pylist(), strict=True))


def test_fractions_are_close_to_configured(tmp_path):
    splits = np.array(list(_split(generate_demo_data(20_000, seed=0), tmp_path).values()))
    assert abs((splits == 0).mean() - 0.70) < 0.02
    assert abs((splits == 1).mean() - 0.15) < 0.02
    assert abs((splits == 2).mean() - 0.15) < 0.02


def test_a_row_keeps_its_split_when_the_table_grows_or_is_reordered(tmp_path):
    first = generate_demo_data(1000, seed=0)
    more = generate_demo_data(1000, seed=9, id_offset=1000)
    grown = pa.concat_tables([more, first.take(pa.array(np.arange(999, -1, -1)))])
    before = _split(first, tmp_path)
    after = _split(grown, tmp_path)
    assert all(after[k] == v for k, v in before.items())


def test_seed_changes_the_assignment(tmp_path):
    table = generate_demo_data(1000, seed=0)
    assert _split(table, tmp_path, seed=1) != _split(table, tmp_path, seed=2)


def test_without_id_the_row_content_decides(tmp_path):
    table = generate_demo_data(500, seed=0)
    a = _split(table, tmp_path, id_column=None)
    b = _split(table.take(pa.array(np.arange(499, -1, -1))), tmp_path, id_column=None)
    assert a == b
