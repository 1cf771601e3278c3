"""The buffered inference log: bulk tables with the log schema, retry after a failed write, bounded memory."""

from __future__ import annotations

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
