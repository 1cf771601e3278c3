"""The buffered inference log: bulk tables with the log schema, retry after a failed write, bounded memory."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from raymlops.serve._log import (
    BufferedLog,
    Feedback,
    Prediction,
    feedback_schema,
    feedback_table,
    inference_log_schema,
    now_us,
    prediction_table,
    record_columns,
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
    frame["monitor_row"] = pd.array([None] * len(frame), dtype="Int64")
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def test_prediction_table_equals_the_pandas_build_it_replaced(make_config):
    schema = inference_log_schema(make_config())
    odd = dict(RECORD, income_k=math.nan, region=None, customer_id="odd-0")  # NaN and None: both null
    entries = [
        _entry("a", 3),
        _entry("b", 1, shadow=True),
        _entry("c", 2)._replace(probabilities=None, route="canary"),
        _entry("d", 1)._replace(records=[odd]),
        *(_entry(f"r{i}", 1 + i % 5, shadow=i % 3 == 0) for i in range(40)),
    ]
    built = prediction_table(entries, schema)
    assert built.equals(_pandas_prediction_table(entries, schema))
    assert built.column("income_k").to_pylist()[6] is None and built.column("region").null_count == 1
