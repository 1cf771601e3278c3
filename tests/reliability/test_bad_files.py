"""Damaged CSV and Parquet files, generated: ingest names the problem or takes the good rows, nothing else."""

from __future__ import annotations

import io

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from hypothesis import given
from hypothesis import strategies as st

from raymlops import data
from raymlops.config import parse_config
from raymlops.errors import DataError
from tests.helpers.fuzz import fuzz_settings

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("ray_cluster")]

SETTINGS = fuzz_settings(10)


def _valid(fmt: str) -> bytes:
    table = data.generate_demo_data(300, seed=3)
    out = io.BytesIO()
    (pacsv.write_csv if fmt == "csv" else pq.write_table)(table, out)
    return out.getvalue()


@st.composite
def damaged(draw, fmt: str) -> bytes:
    blob = _valid(fmt)
    kind = draw(st.sampled_from(["truncate", "overwrite", "insert", "header"]))
    at = draw(st.integers(min_value=0, max_value=len(blob) - 1))
    junk = draw(st.binary(min_size=1, max_size=40))
    if kind == "truncate":
        return blob[:at]
    if kind == "overwrite":
        return blob[:at] + junk + blob[at + len(junk) :]
    if kind == "insert":
        return blob[:at] + junk + blob[at:]
    return junk + blob[blob.find(b"\n") :] if fmt == "csv" else junk + blob


@pytest.fixture(scope="module")
def damaged_home(trained_pair, tmp_path_factory):
    raw = trained_pair.raw("damaged", data={"table": "damaged"})
    raw["storage"]["home"] = str(tmp_path_factory.mktemp("damaged") / "home")
    cfg = parse_config(raw)
    folder = tmp_path_factory.mktemp("files")
    (folder / "first.csv").write_bytes(_valid("csv"))
    data.ingest(str(folder / "first.csv"), cfg)
    return cfg, folder


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_damaged_files_are_refused_with_a_data_error_or_ingested_valid_rows_only(damaged_home, fmt, figures):
    cfg, folder = damaged_home
    tally: dict[str, int] = {}

    @SETTINGS
    @given(blob=damaged(fmt))
    def check(blob: bytes) -> None:
        path = folder / f"damaged.{fmt}"
        path.write_bytes(blob)
        before = DeltaTable(cfg.table_uri).version()
        try:
            version = data.ingest(str(path), cfg, mode="append", on_invalid="quarantine")
        except DataError as e:
            assert str(e).strip() and type(e).__name__ in ("DataSourceError", "DataValidationError")
            assert DeltaTable(cfg.table_uri).version() == before  # nothing written
            tally[type(e).__name__] = tally.get(type(e).__name__, 0) + 1
            return
        assert version.version == before + 1 and version.num_rows_added >= 1
        tally["ingested"] = tally.get("ingested", 0) + 1

    check()
    assert sum(tally.values()) >= 10
    DeltaTable(cfg.table_uri).to_pyarrow_table()  # the table reads back whole after all of it
    figures.update(files=sum(tally.values()), **tally)
