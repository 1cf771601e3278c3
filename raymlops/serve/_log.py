"""The inference log and feedback tables, fed from the request path without blocking it.

A replica appends one small pandas frame per request to an in-memory buffer
(microseconds, under a lock); a background thread turns everything buffered
into one Arrow table every ``log_flush_interval_s`` and appends it to a Delta
table in one commit. A failed write keeps the rows and retries at the next
flush; past ``log_max_buffer_rows`` the oldest rows are dropped and counted,
so a broken disk slows nothing and never exhausts memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pandas as pd
import pyarrow as pa

from raymlops.config import ProjectConfig
from raymlops.data._schema import _ARROW_TYPES, column_rules

_LOG = logging.getLogger("raymlops.serve")

REQUEST_ID = "request_id"
RECORD_INDEX = "record_index"
TS = "ts"


def inference_log_schema(config: ProjectConfig) -> pa.Schema:
    """request_id, record_index, ts, the record's columns, the model version and its answer."""
    schema = config.data.schema
    label_type = pa.float64() if config.model.task == "regression" else _ARROW_TYPES[schema.label.dtype]
    columns = [
        r for r in column_rules(schema, include_label=False) if r.role in ("feature", "metadata", "id")
    ]
    return pa.schema(
        [
            pa.field(REQUEST_ID, pa.string()),
            pa.field(RECORD_INDEX, pa.int32()),
            pa.field(TS, pa.timestamp("us", tz="UTC")),
            *(pa.field(r.name, r.arrow_type) for r in columns),
            pa.field("model_version", pa.int64()),
            pa.field("route", pa.string()),  # champion | canary
            pa.field("prediction", label_type),
            pa.field("probability", pa.float64()),  # binary: of the positive class
            pa.field("shadow_version", pa.int64()),
            pa.field("shadow_prediction", label_type),
        ]
    )


def feedback_schema(config: ProjectConfig) -> pa.Schema:
    label = config.data.schema.label
    label_type = pa.float64() if config.model.task == "regression" else _ARROW_TYPES[label.dtype]
    return pa.schema(
        [
            pa.field(REQUEST_ID, pa.string()),
            pa.field(RECORD_INDEX, pa.int32()),
            pa.field(TS, pa.timestamp("us", tz="UTC")),
            pa.field("label", label_type),
        ]
    )


def delta_sink(table_uri: str) -> Callable[[pa.Table], None]:
    """Append a table to a Delta table (created on first write) in one commit."""
    from deltalake import write_deltalake

    def write(table: pa.Table) -> None:
        write_deltalake(table_uri, table, mode="append")

    return write


class BufferedLog:
    """Rows in, Delta commits out, on a background thread."""

    def __init__(
        self,
        sink: Callable[[pa.Table], None],
        schema: pa.Schema,
        *,
        flush_interval_s: float = 1.0,
        max_buffer_rows: int = 100_000,
        name: str = "inference-log",
    ) -> None:
        self._sink = sink
        self._schema = schema
        self._interval_s = flush_interval_s
        self._max_rows = max_buffer_rows
        self._chunks: list[pd.DataFrame] = []
        self._num_buffered = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self.num_written = 0
        self.num_dropped = 0
        self.num_failed_flushes = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def append(self, frame: pd.DataFrame) -> None:
        """Hand rows over; never blocks on I/O."""
        with self._lock:
            self._chunks.append(frame)
            self._num_buffered += len(frame)
            while self._num_buffered > self._max_rows and len(self._chunks) > 1:
                dropped = self._chunks.pop(0)
                self._num_buffered -= len(dropped)
                self.num_dropped += len(dropped)

    @property
    def num_buffered(self) -> int:
        return self._num_buffered

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written (0 on failure, rows kept)."""
        with self._flush_lock:
            with self._lock:
                chunks, self._chunks = self._chunks, []
                self._num_buffered = 0
            if not chunks:
                return 0
            try:
                frame = pd.concat(chunks, ignore_index=True)
                table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
                self._sink(table)
            except Exception as e:  # keep the rows; the next flush retries
                self.num_failed_flushes += 1
                self.last_error = f"{type(e).__name__}: {e}"
                _LOG.warning(
                    "inference log flush failed (%s); %d rows kept for retry", self.last_error, len(frame)
                )
                with self._lock:
                    self._chunks[:0] = chunks
                    self._num_buffered += sum(len(c) for c in chunks)
                return 0
            self.num_written += len(table)
            return len(table)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after a last flush."""
        self._stop.set()
        self._thread.join(timeout_s)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.flush()
            except Exception:  # never let the thread die; flush() already logs
                time.sleep(self._interval_s)
