"""Ingest and prepare against a real local Ray cluster and real Delta tables."""

from __future__ import annotations

import glob

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from raymlops import data
from raymlops.data._schema import column_rules, table_schema
from raymlops.errors import DataIntegrityError, DataSourceError, DataValidationError, VersionNotFoundError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]


def _csv(path, num_rows=400, seed=1, id_offset=0):
    pacsv.write_csv(data.generate_demo_data(num_rows, seed=seed, id_offset=id_offset), path)
    return str(path)


def _arrow(ds) -> pa.Table:
    import ray

    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def _rows(prepared: data.PreparedData) -> pd.DataFrame:
    frames = [prepared.split(name).to_pandas() for name in data.SPLITS]
    return pd.concat(frames).sort_values("customer_id").reset_index(drop=True)


def test_same_file_twice_gives_two_versions_with_equal_digests(tmp_path, make_config):
    cfg = make_config()
    source = _csv(tmp_path / "a.csv")
    v0 = data.ingest(source, cfg)
    v1 = data.ingest(source, cfg)
    assert (v0.version, v1.version) == (0, 1)
    assert v0.added_digest == v1.added_digest  # same content, same digest
    assert (v0.num_rows, v1.num_rows) == (400, 800)
    assert v0.digest != v1.digest  # the table at v1 holds the rows twice
    # overwrite: the table at each version holds exactly the file, so whole-table digests agree
    v2 = data.ingest(source, cfg, mode="overwrite")
    v3 = data.ingest(source, cfg, mode="overwrite")
    assert v2.digest == v3.digest == v0.digest
    assert [v.version for v in data.list_versions(cfg.table_uri)] == [0, 1, 2, 3]
    assert DeltaTable(cfg.table_uri).version() == 3


def test_prepare_on_an_old_version_returns_its_rows_exactly(tmp_path, make_config):
    cfg = make_config()
    v0 = data.ingest(_csv(tmp_path / "a.csv", seed=1), cfg)
    data.ingest(_csv(tmp_path / "b.csv", seed=2, id_offset=10_000), cfg)
    prepared = data.prepare(v0, cfg)
    expected = (
        data.generate_demo_data(400, seed=1).to_pandas().sort_values("customer_id").reset_index(drop=True)
    )
    got = _rows(prepared)[expected.columns]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert sum(prepared.split_num_rows) == 400


def test_four_problems_in_one_error_and_nothing_written(tmp_path, make_config):
    cfg = make_config()
    frame = data.generate_demo_data(50, seed=4).to_pandas().drop(columns=["channel"])  # missing column
    frame = frame.astype({"income_k": object})
    frame.loc[3, "income_k"] = "abc"  # wrong type
    frame.loc[7, "age"] = 150  # out of range
    frame.loc[9, "plan"] = "platinum"  # unknown category
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError) as info:
        data.ingest(str(path), cfg)
    report = info.value.report
    assert set(report.rules) == {"missing_column:channel", "type:income_k", "range:age", "category:plan"}
    by_rule = {v.rule: v for v in report.violations}
    assert by_rule["type"].count == 1 and '"income_k": "abc"' in by_rule["type"].examples[0]
    assert by_rule["range"].count == 1 and by_rule["category"].count == 1
    message = str(info.value)
    for text in ("missing_column", "income_k", "[range] column 'age'", "platinum", "nothing was written"):
        assert text in message
    assert not DeltaTable.is_deltatable(cfg.table_uri)


def test_quarantine_lands_good_rows_and_keeps_bad_ones_with_reasons(tmp_path, make_config):
    cfg = make_config(data={"on_invalid": "quarantine"})
    frame = data.generate_demo_data(60, seed=5).to_pandas().astype({"income_k": object})
    frame.loc[3, "income_k"] = "abc"
    frame.loc[7, "age"] = 150
    frame.loc[9, "plan"] = "platinum"
    frame.loc[9, "churned"] = 7
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    v = data.ingest(str(path), cfg)
    assert (v.num_rows_added, v.num_rows_quarantined) == (57, 3)
    stored = DeltaTable(cfg.table_uri, version=v.version).to_pyarrow_table()
    assert stored.num_rows == 57
    assert not {"c000000003", "c000000007", "c000000009"} & set(stored.column("customer_id").to_pylist())
    quarantined = DeltaTable(cfg.quarantine_uri).to_pandas().sort_values("row")
    reasons = {r for rs in quarantined["reasons"] for r in rs}
    assert reasons == {"type:income_k", "range:age", "category:plan", "category:churned"}
    assert quarantined["source_uri"].eq(str(path)).all()
    assert quarantined["row"].str.contains("platinum").sum() == 1


def test_duplicate_ids_are_a_violation(tmp_path, make_config):
    cfg = make_config()
    table = data.generate_demo_data(30, seed=6)
    ids = table.column("customer_id").to_pylist()
    ids[5] = ids[4]
    pacsv.write_csv(
        table.set_column(table.schema.get_field_index("customer_id"), "customer_id", pa.array(ids)),
        tmp_path / "d.csv",
    )
    with pytest.raises(DataValidationError) as info:
        data.ingest(str(tmp_path / "d.csv"), cfg)
    (violation,) = info.value.report.violations
    assert (violation.rule, violation.column, violation.count) == ("duplicate_id", "customer_id", 2)


def test_parquet_and_delta_sources(tmp_path, make_config):
    cfg = make_config()
    table = data.generate_demo_data(100, seed=7)
    pq.write_table(table, tmp_path / "p.parquet")
    v_parquet = data.ingest(str(tmp_path / "p.parquet"), cfg)
    other = make_config(data={"table": "copy"})
    v_delta = data.ingest(cfg.table_uri, other)  # an existing Delta table as the source
    assert v_parquet.added_digest == v_delta.added_digest
    assert data.detect_format(cfg.table_uri) == "delta"


def test_missing_and_unreadable_sources(tmp_path, make_config):
    cfg = make_config()
    with pytest.raises(DataSourceError, match="source not found"):
        data.ingest(str(tmp_path / "nope.csv"), cfg)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("age,plan\n1,basic\n2,basic,extra,fields\n")
    with pytest.raises(DataSourceError, match=r"cannot read .*ragged\.csv as csv"):
        data.ingest(str(ragged), cfg)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataSourceError, match="cannot tell the format"):
        data.ingest(str(tmp_path / "notes.txt"), cfg)


def test_no_valid_row_writes_nothing_even_in_quarantine_mode(tmp_path, make_config):
    cfg = make_config(data={"on_invalid": "quarantine"})
    frame = data.generate_demo_data(10, seed=8).to_pandas()
    frame["age"] = 500
    frame.to_csv(tmp_path / "all_bad.csv", index=False)
    with pytest.raises(DataValidationError):
        data.ingest(str(tmp_path / "all_bad.csv"), cfg)
    assert not DeltaTable.is_deltatable(cfg.table_uri)


def test_nullable_column_absent_from_source_is_filled(tmp_path, make_config):
    cfg = make_config()
    raw_schema = cfg.data.schema.model_dump(by_alias=True)
    raw_schema["metadata_columns"] = [{"name": "note", "dtype": "string", "nullable": True}]
    cfg = make_config(data={"schema": raw_schema})
    v = data.ingest(_csv(tmp_path / "a.csv", num_rows=20), cfg)
    stored = DeltaTable(cfg.table_uri, version=v.version).to_pyarrow_table()
    assert stored.column("note").null_count == 20


def test_prepare_is_deterministic_and_fits_on_train_only(tmp_path, make_config):
    cfg = make_config()
    v = data.ingest(_csv(tmp_path / "a.csv", num_rows=1000), cfg)
    first = data.prepare(v, cfg)
    second = data.prepare(v, cfg)
    assert first.split_digests == second.split_digests
    for name in data.SPLITS:
        left, right = _arrow(first.split(name)), _arrow(second.split(name))
        assert left.equals(right)  # same rows, same order, same types
    train = first.train.to_pandas()
    stats = first.preprocessor.preprocessors[0].stats_  # StandardScaler is the first step here
    assert stats["mean(age)"] == pytest.approx(train["age"].mean())
    whole = pd.concat([first.split(n).to_pandas() for n in data.SPLITS])
    assert stats["mean(age)"] != pytest.approx(whole["age"].mean(), abs=1e-12)
    # 9 scaled numeric + 4 + 3 + 3 one-hot columns
    assert first.feature_dim == 19
    features = first.preprocessor.transform_batch(train.head(3))["features"]
    assert np.asarray(features.iloc[0]).dtype == np.float32


def test_profile_of_the_training_split_matches_numpy(tmp_path, make_config):
    cfg = make_config()
    v = data.ingest(_csv(tmp_path / "a.csv", num_rows=800), cfg)
    prepared = data.prepare(v, cfg)
    train = prepared.train.to_pandas()
    for column in ("age", "income_k", "days_since_last"):
        profile = prepared.profile.column(column)
        edges = np.unique(
            np.quantile(train[column], np.linspace(0, 1, cfg.preprocessing.profile_num_bins + 1))
        )
        np.testing.assert_allclose(profile.bin_edges, edges, rtol=0, atol=0)
        assert profile.counts == tuple(np.histogram(train[column], bins=edges)[0])
    plan = dict(prepared.profile.column("plan").frequencies)
    assert plan == train["plan"].value_counts().to_dict()
    assert dict(prepared.profile.column("churned").frequencies) == {
        str(k): v for k, v in train["churned"].value_counts().items()
    }
    assert prepared.profile.num_rows == len(train) == prepared.split_num_rows[0]


def test_tampered_version_is_refused(tmp_path, make_config):
    cfg = make_config()
    v = data.ingest(_csv(tmp_path / "a.csv", num_rows=200), cfg)
    target = sorted(glob.glob(f"{cfg.table_uri}/*.parquet"))[0]
    table = pq.read_table(target)
    ages = table.column("age").to_pylist()
    ages[0] = ages[0] + 1.0
    pq.write_table(table.set_column(table.schema.get_field_index("age"), "age", pa.array(ages)), target)
    with pytest.raises(DataIntegrityError, match="no longer matches its digest"):
        data.prepare(v, cfg)
    with pytest.raises(DataIntegrityError, match="no longer matches its digest"):
        data.holdout(v, cfg)  # the gate's in-process read checks the digest too


def test_holdout_is_exactly_the_test_split_of_prepare(tmp_path, make_config):
    cfg = make_config()
    data.ingest(_csv(tmp_path / "a.csv", num_rows=900, seed=4), cfg)
    v1 = data.ingest(_csv(tmp_path / "b.csv", num_rows=300, seed=5, id_offset=5000), cfg)
    expected = data.prepare(v1, cfg).test.to_pandas().sort_values("customer_id").reset_index(drop=True)
    got = data.holdout(v1, cfg).to_pandas().sort_values("customer_id").reset_index(drop=True)
    assert 100 < len(got) < 300
    pd.testing.assert_frame_equal(got, expected[got.columns], check_dtype=False)


def test_versions_are_recorded_and_looked_up(tmp_path, make_config):
    cfg = make_config()
    with pytest.raises(VersionNotFoundError, match="ingest data first"):
        data.get_version(cfg.table_uri)
    v0 = data.ingest(_csv(tmp_path / "a.csv", num_rows=50), cfg)
    assert data.get_version(cfg.table_uri) == v0
    assert data.get_version(cfg.table_uri, 0).schema == cfg.data.schema
    with pytest.raises(VersionNotFoundError, match="versions: 0"):
        data.get_version(cfg.table_uri, 7)
    rules = column_rules(cfg.data.schema)
    assert DeltaTable(cfg.table_uri).schema().to_arrow().names == table_schema(rules).names


def test_rows_appended_outside_raymlops_are_covered_by_the_next_digest(tmp_path, make_config):
    from deltalake import write_deltalake

    from raymlops.data._schema import column_rules as rules_of
    from raymlops.data._schema import table_schema as schema_of

    cfg = make_config()
    data.ingest(_csv(tmp_path / "a.csv", num_rows=100, seed=1), cfg)
    outside = data.generate_demo_data(30, seed=2, id_offset=5000).cast(schema_of(rules_of(cfg.data.schema)))
    write_deltalake(cfg.table_uri, outside, mode="append")  # a writer that is not raymlops
    v = data.ingest(_csv(tmp_path / "b.csv", num_rows=50, seed=3, id_offset=9000), cfg)
    assert (v.version, v.num_rows, v.num_rows_added) == (2, 180, 50)
    prepared = data.prepare(v, cfg)  # verifies the recorded digest against every stored row
    assert sum(prepared.split_num_rows) == 180


def test_a_parquet_file_is_read_by_row_groups_with_the_same_result(tmp_path, make_config):
    table = data.generate_demo_data(1_000, seed=11)
    ids = table.column("customer_id").to_pylist()
    ids[990] = ids[3]  # a duplicate across row groups, so across read tasks
    table = table.set_column(table.schema.get_field_index("customer_id"), "customer_id", pa.array(ids))
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=100)
    pq.write_table(table, tmp_path / "one.parquet")
    assert pq.read_metadata(tmp_path / "groups.parquet").num_row_groups == 10

    quarantine = {"on_invalid": "quarantine"}
    by_groups = data.ingest(str(tmp_path / "groups.parquet"), make_config(data={**quarantine, "table": "a"}))
    whole = data.ingest(str(tmp_path / "one.parquet"), make_config(data={**quarantine, "table": "b"}))
    assert (by_groups.num_rows_added, by_groups.num_rows_quarantined) == (998, 2)
    assert by_groups.added_digest == whole.added_digest
    stored = DeltaTable(by_groups.table_uri).to_pyarrow_table()
    assert sorted(stored.column("customer_id").to_pylist()) == sorted(i for i in ids if i != ids[3])


def test_ids_sharing_a_hash_are_compared_by_value(ray_cluster):
    import ray

    from raymlops.data import _ingest
    from raymlops.data._schema import ERRORS_COLUMN, RAW_COLUMN

    # Three distinct ids forced onto one hash, as a 64-bit collision would: none is a duplicate;
    # a real repeat ("b" twice) is found among them.
    def checked(ids):
        n = len(ids)
        return ray.data.from_arrow(
            pa.table(
                {
                    "customer_id": ids,
                    ERRORS_COLUMN: pa.nulls(n, pa.list_(pa.string())),
                    RAW_COLUMN: pa.nulls(n, pa.string()),
                    "_raymlops_h1": pa.array([1] * n, pa.uint64()),
                    "_raymlops_h2": pa.array([2] * n, pa.uint64()),
                    "_raymlops_id_hash": pa.array([7] * n, pa.uint64()),
                }
            )
        )

    distinct = _arrow(_ingest._mark_duplicate_ids(checked(["a", "b", "c"]), "customer_id"))
    assert distinct.column(ERRORS_COLUMN).null_count == 3
    repeated = _arrow(_ingest._mark_duplicate_ids(checked(["a", "b", "c", "b"]), "customer_id"))
    ids, marks = repeated.column("customer_id").to_pylist(), repeated.column(ERRORS_COLUMN).to_pylist()
    assert dict(zip(ids, marks, strict=True)) == {"a": None, "b": ["duplicate_id:customer_id"], "c": None}
    assert repeated.column(RAW_COLUMN).null_count == 2
