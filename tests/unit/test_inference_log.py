"""The buffered inference log: bulk tables with the log schema, retry after a failed write, bounded memory."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError

from raymlops._internal.delta import DeltaAppender
from raymlops.contracts.logs import (
    LOG_TABLE_PROPERTIES,
    feedback_schema,
    inference_log_schema,
    record_columns,
)
from raymlops.serve._journal import Journal
from raymlops.serve._log import (
    BufferedLog,
    Feedback,
    LoggedBatch,
    Prediction,
    feedback_table,
    now_us,
    prediction_table,
)

RECORD = {"age": 40, "income_k": 50.5, "region": "north", "plan": "basic", "channel": "web"}


def _entry(rid: str, n: int = 2, shadow: bool = False) -> Prediction:
    return Prediction(
        rid,
        now_us(),
        [dict(RECORD, customer_id=f"{rid}-{i}") for i in range(n)],
        3,
        "champion",
        [1] * n,
        [0.75] * n,
        4 if shadow else None,
        [0] * n if shadow else None,
    )


def test_prediction_table_has_one_row_per_record(make_config):
    cfg = make_config()
    schema = inference_log_schema(cfg)
    table = prediction_table([_entry("a", 2), _entry("b", 1, shadow=True)], schema)
    assert table.schema == schema
    assert table.column("request_id").to_pylist() == ["a", "a", "b"]
    assert table.column("record_index").to_pylist() == [0, 1, 0]
    assert table.column("customer_id").to_pylist() == ["a-0", "a-1", "b-0"]
    assert table.column("tenure_months").to_pylist() == [None, None, None]  # absent in the records
    assert table.column("shadow_version").to_pylist() == [None, None, 4]
    assert table.column("shadow_prediction").to_pylist() == [None, None, 0]
    labels = feedback_table([Feedback("a", now_us(), [1, 0])], feedback_schema(cfg))
    assert labels.column("record_index").to_pylist() == [0, 1] and labels.column("label").to_pylist() == [
        1,
        0,
    ]


def test_failed_writes_are_retried_and_memory_is_bounded(make_config):
    schema = inference_log_schema(make_config())
    written: list[pa.Table] = []
    fail = {"next": True}

    def sink(table: pa.Table) -> None:
        if fail["next"]:
            fail["next"] = False
            raise OSError("disk full")
        written.append(table)

    log = BufferedLog(
        sink,
        lambda e: prediction_table(e, schema),
        lambda e: len(e.records),
        flush_interval_s=3600,
        max_buffer_rows=6,
    )
    for i in range(3):
        log.append(_entry(f"r{i}", 2))
    assert log.flush() == 0 and log.num_failed_flushes == 1 and log.num_buffered == 6
    assert "disk full" in (log.last_error or "")
    log.append(_entry("r3", 2))  # over the bound: the oldest entry goes
    assert log.num_dropped == 2 and log.num_buffered == 6
    assert log.flush() == 6
    assert written[0].column("request_id").to_pylist() == ["r1", "r1", "r2", "r2", "r3", "r3"]
    log.close()


def _pandas_prediction_table(entries: list[Prediction], schema: pa.Schema) -> pa.Table:
    """The earlier, pandas-based build of the table: the reference the Arrow build must equal."""
    counts = np.fromiter((len(e.records) for e in entries), dtype=np.int64, count=len(entries))
    frame = pd.DataFrame.from_records([r for e in entries for r in e.records], columns=record_columns(schema))
    for name in record_columns(schema):  # the time column: ISO 8601 text in requests
        if pa.types.is_timestamp(schema.field(name).type):
            frame[name] = pd.to_datetime(frame[name].astype(object), utc=True, format="ISO8601")
    frame.insert(0, "request_id", np.repeat(np.array([e.request_id for e in entries], dtype=object), counts))
    frame.insert(1, "record_index", np.concatenate([np.arange(c, dtype=np.int32) for c in counts]))
    ts = np.repeat(np.array([e.ts_us for e in entries], dtype="datetime64[us]"), counts)
    frame.insert(2, "ts", pd.DatetimeIndex(ts).tz_localize("UTC"))
    frame["model_version"] = np.repeat([e.model_version for e in entries], counts)
    frame["route"] = np.repeat(np.array([e.route for e in entries], dtype=object), counts)
    frame["prediction"] = [p for e in entries for p in e.predictions]
    frame["probability"] = [
        p
        for e in entries
        for p in (e.probabilities if e.probabilities is not None else [None] * len(e.records))
    ]
    frame["shadow_version"] = pd.array(
        np.repeat([e.shadow_version for e in entries], counts).tolist(), dtype="Int64"
    )
    frame["shadow_prediction"] = [
        p
        for e in entries
        for p in (e.shadow_predictions if e.shadow_predictions is not None else [None] * len(e.records))
    ]
    frame["model_ms"] = pd.array([None] * len(frame), dtype="Float64")  # not measured by these entries
    frame["monitor_row"] = pd.array([None] * len(frame), dtype="Int64")
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def test_prediction_table_equals_the_pandas_build_it_replaced(make_config):
    schema = inference_log_schema(make_config())
    odd = dict(RECORD, income_k=math.nan, region=None, customer_id="odd-0")  # NaN and None: both null
    timed = dict(RECORD, customer_id="timed-0", event_time="2026-12-06T10:00:00Z")
    entries = [
        _entry("t", 1)._replace(records=[timed]),
        _entry("a", 3),
        _entry("b", 1, shadow=True),
        _entry("c", 2)._replace(probabilities=None, route="canary"),
        _entry("d", 1)._replace(records=[odd]),
        *(_entry(f"r{i}", 1 + i % 5, shadow=i % 3 == 0) for i in range(40)),
    ]
    built = prediction_table(entries, schema)
    assert built.equals(_pandas_prediction_table(entries, schema))
    assert built.column("income_k").to_pylist()[7] is None and built.column("region").null_count == 1
    times = built.column("event_time")
    assert (
        times.to_pylist()[0].isoformat() == "2026-12-06T10:00:00+00:00"
        and times.null_count == times.length() - 1
    )


def _as_logged(entries: list[Prediction], columns: list[str]) -> LoggedBatch:
    """What the endpoint hands over for these requests answered by one model call."""
    first = entries[0]
    return LoggedBatch(
        [e.request_id for e in entries],
        np.array([len(e.records) for e in entries], dtype=np.int64),
        np.array([e.ts_us for e in entries], dtype=np.int64),
        pd.DataFrame.from_records([r for e in entries for r in e.records], columns=columns),
        first.model_version,
        first.route,
        np.array([p for e in entries for p in e.predictions]),
        None
        if first.probabilities is None
        else np.array([p for e in entries for p in e.probabilities or ()]),
        first.shadow_version,
        None
        if first.shadow_predictions is None
        else np.array([p for e in entries for p in e.shadow_predictions or ()]),
    )


def test_batches_of_the_model_frame_give_the_table_of_the_same_requests(make_config):
    """The endpoint's form (frames and arrays) equals the per-request reference, mixed with old entries."""
    cfg = make_config()
    schema = inference_log_schema(cfg)
    columns = [*cfg.data.schema.feature_names, cfg.data.schema.id_column]  # as the endpoint's frame
    odd = dict(RECORD, income_k=math.nan, region=None, customer_id="odd-0")
    champion = [_entry(f"c{i}", 1 + i % 5) for i in range(7)]
    shadowed = [_entry(f"s{i}", 2, shadow=True) for i in range(3)]
    canary = [_entry(f"k{i}", 1)._replace(probabilities=None, route="canary") for i in range(2)]
    nulls = [_entry("d", 1)._replace(records=[odd])]
    no_region = [_entry("e", 2)._replace(records=[{"age": 30, "customer_id": f"e-{i}"} for i in range(2)])]
    old = [_entry("journaled-by-an-older-replica", 3)]
    groups = [champion, shadowed, canary, nulls, no_region]
    entries: list[LoggedBatch | Prediction] = [_as_logged(g, columns) for g in groups[:3]]
    entries += old + [_as_logged(g, columns) for g in groups[3:]]
    built = prediction_table(entries, schema)
    flat = [*champion, *shadowed, *canary, *old, *nulls, *no_region]
    assert built.equals(_pandas_prediction_table(flat, schema))
    assert built.num_rows == sum(e.num_rows for e in entries) == sum(e.num_rows for e in flat)
    assert built.column("region").to_pylist()[-3:] == [None, None, None]  # NaN, None and absent: null
    assert prediction_table([], schema).num_rows == 0


def _journaled_log(sink, schema: pa.Schema, folder, **options) -> BufferedLog:
    """A prediction log with a journal in ``folder`` that flushes only when told to."""
    return BufferedLog(
        sink,
        lambda e: prediction_table(e, schema),
        lambda e: e.num_rows,
        flush_interval_s=3600,
        journal=Journal(folder),
        **options,
    )


def test_a_journaled_batch_is_adopted_whole(make_config, tmp_path):
    """A dead replica's LoggedBatch comes back from its journal and builds the same rows."""
    cfg = make_config()
    schema = inference_log_schema(cfg)
    columns = [*cfg.data.schema.feature_names, cfg.data.schema.id_column]
    batch = _as_logged([_entry(f"j{i}", 3, shadow=True) for i in range(4)], columns)
    folder = tmp_path / "journal"
    dead = Journal(folder)
    dead.write([batch])
    dead._file.close()
    os.close(dead._lock_fd)  # the owner is gone: its lock can be taken
    written: list[pa.Table] = []
    log = _journaled_log(written.append, schema, folder)
    assert log.flush() == 12
    assert written[0].equals(prediction_table([batch], schema))
    log.close()


def test_the_appender_keeps_the_table_open_and_survives_other_writers(tmp_path, make_config):
    schema = inference_log_schema(make_config())
    uri = str(tmp_path / "log")
    table = prediction_table([_entry("a", 2)], schema)
    append = DeltaAppender(uri, reopen_every=3)
    append(table)  # creates it
    for _ in range(4):
        append(table)
    write_deltalake(uri, table, mode="append")  # another replica
    append(table)
    assert DeltaTable(uri).version() == 6
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 14
    shutil.rmtree(
        uri
    )  # the log removed under it: that append fails (the buffer retries), the next recreates it
    with pytest.raises(DeltaError):
        append(table)
    append(table)
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 2


def _stats_columns(uri: str) -> set[str]:
    """The columns the newest commit's added file has min/max statistics for."""
    last = sorted(name for name in os.listdir(os.path.join(uri, "_delta_log")) if name.endswith(".json"))[-1]
    with open(os.path.join(uri, "_delta_log", last)) as f:
        adds = [json.loads(line)["add"] for line in f if '"add"' in line]
    return set(json.loads(adds[0]["stats"])["minValues"])


def test_the_log_table_gets_its_properties_when_created_and_when_found_without(tmp_path, make_config):
    schema = inference_log_schema(make_config())
    table = prediction_table([_entry("a", 2)], schema)
    created = str(tmp_path / "created")
    DeltaAppender(created, properties=LOG_TABLE_PROPERTIES)(table)
    assert DeltaTable(created).metadata().configuration == LOG_TABLE_PROPERTIES
    assert _stats_columns(created) == {"request_id", "ts"}  # monitor_row is all null: no min/max

    older = str(tmp_path / "older")
    write_deltalake(older, table, mode="append")  # an older raymlops' log: Delta's defaults
    assert "age" in _stats_columns(older)
    append = DeltaAppender(older, properties=LOG_TABLE_PROPERTIES)
    append(table)
    append(table)
    assert DeltaTable(older).metadata().configuration == LOG_TABLE_PROPERTIES
    assert DeltaTable(older).version() == 3  # the first write, the properties, two appends
    assert _stats_columns(older) == {"request_id", "ts"}
    assert DeltaTable(older).to_pyarrow_table().num_rows == 6


def test_the_journal_keeps_the_bodies_and_an_adopter_rebuilds_the_frame(make_config, tmp_path):
    """The live replica journals each request's body, not the frame; the rows come back the same."""
    from raymlops.serve._journal import _read_or_set_aside
    from raymlops.serve._log import journal_form

    cfg = make_config()
    schema = inference_log_schema(cfg)
    columns = [*cfg.data.schema.feature_names, cfg.data.schema.id_column]
    groups = [[_entry(f"b{g}-{i}", 1 + i % 3, shadow=g == 1) for i in range(5)] for g in range(2)]
    batches = [
        _as_logged(group, columns)._replace(
            bodies=[json.dumps({"records": e.records, "request_id": e.request_id}).encode() for e in group]
        )
        for group in groups
    ]
    folder = tmp_path / "journal"
    live = _journaled_log(lambda table: None, schema, folder, journal_form=journal_form)
    live.append_many(batches)
    live._stop.set()
    assert live._journal is not None
    live._journal._file.close()
    os.close(live._journal._lock_fd)  # killed before its flush
    (segment,) = folder.glob("*.wal")
    journaled = _read_or_set_aside(segment)
    assert [b.frame for b in journaled] == [None, None] and journaled[0].bodies == batches[0].bodies

    written: list[pa.Table] = []
    adopter = _journaled_log(written.append, schema, folder, journal_form=journal_form)
    assert adopter.flush() == sum(b.num_rows for b in batches) == 18
    assert written[0].equals(prediction_table(batches, schema))
    adopter.close()
    # an older replica's LoggedBatch (ten fields, no bodies) still unpickles: the new field has a default
    assert LoggedBatch.__new__(LoggedBatch, *tuple(batches[0])[:10]).bodies is None
