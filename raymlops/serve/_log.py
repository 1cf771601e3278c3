"""The inference log and feedback tables, fed from the request path without blocking it.

A replica appends one ``LoggedBatch`` per model call to an in-memory buffer (a
list append under a lock): the requests' ids, the pandas frame the model was
called with and the model output's arrays, nothing converted per request. A
background thread turns everything buffered into one Arrow table every
``log_flush_interval_s`` and appends it to a Delta table in one commit. A
failed write keeps the rows and retries at the next flush; past
``log_max_buffer_rows`` the oldest rows are dropped and counted, so a broken
disk slows nothing and never exhausts memory. With a ``Journal`` each entry is
also appended to the replica's write-ahead file before the request is
answered, so a killed replica's answered requests still reach the log
(another replica adopts them).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from raymlops._internal.delta import delta_sink
from raymlops.contracts.logs import (
    LOG_TABLE_PROPERTIES,
    MODEL_MS,
    MONITOR_ROW,
    RECORD_INDEX,
    REQUEST_ID,
    TS,
    record_columns,
)
from raymlops.serve._journal import Journal

_LOG = logging.getLogger("raymlops.serve")


class Prediction(NamedTuple):
    """One request's predictions as plain Python values.

    What replicas journaled before ``LoggedBatch``; still read from a dead
    replica's journal, and the handy form to write a log row by hand.
    """

    request_id: str
    ts_us: int  # microseconds since the epoch, UTC
    records: list[dict[str, Any]]
    model_version: int
    route: str
    predictions: list[Any]
    probabilities: list[float] | None
    shadow_version: int | None
    shadow_predictions: list[Any] | None

    @property
    def num_rows(self) -> int:
        return len(self.records)


class LoggedBatch(NamedTuple):
    """One model call's answered requests, as the request path hands them over.

    The records stay in the frame the model was called with and the answers
    in the model output's arrays: nothing is converted per request or per
    record on the request path, and the buffer holds a few arrays per batch
    instead of a dict per record. The flush concatenates the frames and hands
    their columns to Arrow (``prediction_table``).

    ``bodies`` are the requests' JSON bodies as received. The journal keeps
    them instead of the frame (``for_journal``): pickling the bytes of a
    16-request batch took 30 µs against 150 µs for its frame, on the request
    path, and the frame is needed again only after a crash (``restored``).
    """

    request_ids: list[str]
    num_records: np.ndarray  # per request, int64; they sum to len(frame)
    ts_us: np.ndarray  # per request, int64: microseconds since the epoch, UTC
    frame: pd.DataFrame | None  # the requests' records, one row each, in request order; None: see bodies
    model_version: int
    route: str
    predictions: np.ndarray
    probabilities: np.ndarray | None
    shadow_version: int | None
    shadow_predictions: np.ndarray | None
    bodies: list[bytes] | None = None  # per request: the JSON body its "records" came from
    model_ms: float = math.nan  # this batch's model call for ``model_version``, milliseconds

    @property
    def num_rows(self) -> int:
        return len(self.predictions)

    def for_journal(self) -> LoggedBatch:
        """The form the journal pickles: the bodies without the frame (as is when there are none)."""
        return self._replace(frame=None) if self.bodies is not None else self

    def restored(self, columns: list[str]) -> LoggedBatch:
        """The frame again, from the bodies (a batch read back from a journal)."""
        if self.frame is not None:
            return self
        records = [record for body in self.bodies or () for record in json.loads(body)["records"]]
        return self._replace(frame=pd.DataFrame.from_records(records, columns=columns))


def journal_form(entry: LoggedBatch | Prediction) -> LoggedBatch | Prediction:
    """What the inference log's journal keeps of an entry (``LoggedBatch.for_journal``)."""
    return entry.for_journal() if isinstance(entry, LoggedBatch) else entry


class Feedback(NamedTuple):
    request_id: str
    ts_us: int
    labels: list[Any]


def now_us() -> int:
    return time.time_ns() // 1000


def prediction_table(entries: Sequence[LoggedBatch | Prediction], schema: pa.Schema) -> pa.Table:
    """Buffered entries → one Arrow table of the inference-log schema (on the flush thread).

    The batches' frames are concatenated once and each column goes to Arrow
    from its NumPy or Arrow array; per-request values are repeated over the
    requests' records with NumPy. NaN becomes null as it did through pandas.
    Runs of ``Prediction`` entries (an older replica's journal) become one
    batch each first.
    """
    names = record_columns(schema)
    batches: list[LoggedBatch] = []
    for is_batch, run in groupby(entries, key=lambda e: isinstance(e, LoggedBatch)):
        if is_batch:
            batches.extend(b.restored(names) for b in run)  # type: ignore[union-attr]
        else:
            batches.extend(_as_batches(list(run), names))  # type: ignore[arg-type]
    if not batches:
        return schema.empty_table()
    counts = np.concatenate([b.num_records for b in batches]).astype(np.int64, copy=False)
    batch_rows = np.array([b.num_rows for b in batches], dtype=np.int64)
    num_rows = int(batch_rows.sum())
    frames = [b.frame for b in batches if b.frame is not None]  # every one, once restored
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def per_batch(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
        return pa.array(np.repeat(np.array(values, dtype=object), batch_rows), arrow_type)

    starts = np.cumsum(counts) - counts
    columns: dict[str, Any] = {
        REQUEST_ID: pa.array(
            np.repeat(np.array([rid for b in batches for rid in b.request_ids], dtype=object), counts),
            pa.string(),
        ),
        RECORD_INDEX: pa.array((np.arange(num_rows) - np.repeat(starts, counts)).astype(np.int32)),
        TS: pa.array(np.repeat(np.concatenate([b.ts_us for b in batches]), counts)).cast(
            schema.field(TS).type
        ),
    }
    for name in names:
        columns[name] = _frame_column(frame, name, schema.field(name).type)
    label_type = schema.field("prediction").type
    columns["model_version"] = per_batch([b.model_version for b in batches], pa.int64())
    columns["route"] = per_batch([b.route for b in batches], pa.string())
    columns["prediction"] = _joined([b.predictions for b in batches], batch_rows, label_type)
    columns["probability"] = _joined([b.probabilities for b in batches], batch_rows, pa.float64())
    columns["shadow_version"] = per_batch([b.shadow_version for b in batches], pa.int64())
    columns["shadow_prediction"] = _joined([b.shadow_predictions for b in batches], batch_rows, label_type)
    model_ms = np.repeat(np.array([b.model_ms for b in batches], dtype=np.float64), batch_rows)
    columns[MODEL_MS] = pa.array(model_ms, pa.float64(), from_pandas=True)  # NaN (not measured): null
    columns[MONITOR_ROW] = pa.nulls(num_rows, pa.int64())
    return pa.table(columns, schema=schema)


def logged_recently(table_uri: str, request_id: str, horizon_s: float) -> bool:
    """Whether the inference log holds a prediction with this id from the last ``horizon_s``."""
    import pyarrow.dataset as pads
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(table_uri)
    except TableNotFoundError:
        return False
    since = pa.scalar(int((time.time() - horizon_s) * 1e6), pa.timestamp("us", tz="UTC"))
    found = table.to_pyarrow_dataset().to_table(
        columns=[REQUEST_ID], filter=(pads.field(TS) >= since) & (pads.field(REQUEST_ID) == request_id)
    )
    return found.num_rows > 0


def _frame_column(frame: pd.DataFrame, name: str, arrow_type: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """A frame's column in Arrow (null where the records lacked it), from its array where it can."""
    if name not in frame.columns:
        return pa.nulls(len(frame), arrow_type)
    column = frame[name]
    if pa.types.is_timestamp(arrow_type) and not pd.api.types.is_datetime64_any_dtype(column):
        # ISO 8601 text from requests (NaN where a record had none)
        column = pd.to_datetime(column.astype(object), utc=True, format="ISO8601")
    try:
        return pa.Array.from_pandas(column, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # mixed values (a frame of mostly-missing records): convert them one by one
        return pa.array(column.astype(object).tolist(), arrow_type, from_pandas=True)


def _joined(parts: list[np.ndarray | None], sizes: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """Per-record answers of every batch as one column; a batch without them gives nulls."""
    if all(p is None for p in parts):
        return pa.nulls(int(sizes.sum()), arrow_type)
    if any(p is None for p in parts):
        parts = [
            np.full(n, None, dtype=object) if p is None else p for p, n in zip(parts, sizes, strict=True)
        ]
    return pa.array(np.concatenate(parts), arrow_type, from_pandas=True)  # type: ignore[arg-type]


def _as_batches(entries: list[Prediction], columns: list[str]) -> list[LoggedBatch]:
    """Per-request entries → batches, one per run of requests that one model call could have answered."""

    def key(e: Prediction) -> tuple[Any, ...]:
        return (
            e.model_version,
            e.route,
            e.shadow_version,
            e.probabilities is None,
            e.shadow_predictions is None,
        )

    batches = []
    for _, group in groupby(entries, key=key):
        run = list(group)
        records = [r for e in run for r in e.records]
        first = run[0]
        batches.append(
            LoggedBatch(
                [e.request_id for e in run],
                np.array([len(e.records) for e in run], dtype=np.int64),
                np.array([e.ts_us for e in run], dtype=np.int64),
                pd.DataFrame.from_records(records, columns=columns)
                if records
                else pd.DataFrame(columns=columns),
                first.model_version,
                first.route,
                np.array([p for e in run for p in e.predictions], dtype=object),
                None
                if first.probabilities is None
                else np.array([p for e in run for p in e.probabilities or ()], dtype=np.float64),
                first.shadow_version,
                None
                if first.shadow_predictions is None
                else np.array([p for e in run for p in e.shadow_predictions or ()], dtype=object),
            )
        )
    return batches


def feedback_table(entries: list[Feedback], schema: pa.Schema) -> pa.Table:
    counts = [len(e.labels) for e in entries]
    return pa.table(
        {
            REQUEST_ID: [e.request_id for e, c in zip(entries, counts, strict=True) for _ in range(c)],
            RECORD_INDEX: [i for c in counts for i in range(c)],
            TS: [e.ts_us for e, c in zip(entries, counts, strict=True) for _ in range(c)],
            "label": [label for e in entries for label in e.labels],
        },
        schema=pa.schema([f.with_type(pa.int64()) if f.name == TS else f for f in schema]),
    ).cast(schema)


def monitor_sink(
    actor_name: str, namespace: str, fallback_uri: str, *, timeout_s: float
) -> Callable[[pa.Table], None]:
    """Hand a table to the drift monitor actor and return once it says the rows are durable.

    The ``BufferedLog`` keeps the rows and retries at its next flush when this
    raises (the actor is restarting, or its ack timed out), so delivery is
    at-least-once; the monitor de-duplicates by request id. With no monitor
    actor at all (``monitoring.enabled: false``, or it was stopped for good)
    the rows go to the Delta table directly, so the log never depends on it.
    """
    import ray

    handle: list[Any] = []  # the cached actor handle, looked up again after a failure
    fallback = delta_sink(fallback_uri, LOG_TABLE_PROPERTIES)

    def write(table: pa.Table) -> None:
        if not handle:
            try:
                handle.append(ray.get_actor(actor_name, namespace=namespace))
            except ValueError:  # no such actor: write the log ourselves
                fallback(table)
                return
        try:
            ray.get(handle[0].ingest.remote(table), timeout=timeout_s)
        except Exception:
            handle.clear()
            raise

    return write


Entry = TypeVar("Entry", LoggedBatch | Prediction, Feedback)


class BufferedLog(Generic[Entry]):
    """Entries in, Delta commits out, on a background thread.

    ``journal_form`` maps an entry to what its journal record holds (a cheaper
    form to pickle on the request path); the entries read back from a dead
    replica's journal are in that form, so ``build`` must take it too.
    """

    def __init__(
        self,
        sink: Callable[[pa.Table], None],
        build: Callable[[list[Entry]], pa.Table],
        size: Callable[[Entry], int],
        *,
        flush_interval_s: float = 1.0,
        max_buffer_rows: int = 100_000,
        name: str = "inference-log",
        journal: Journal | None = None,
        journal_form: Callable[[Entry], Any] | None = None,
    ) -> None:
        self._sink = sink
        self._journal = journal
        self._journal_form: Callable[[Entry], Any] | None = journal_form
        self._build: Callable[[list[Entry]], pa.Table] = build
        self._size: Callable[[Entry], int] = size
        self._interval_s = flush_interval_s
        self._max_rows = max_buffer_rows
        self._entries: list[Entry] = []
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

    def append(self, entry: Entry) -> None:
        """Hand an entry over; never blocks on the sink (the journal is a page-cache append)."""
        self.append_many([entry])

    def append_many(self, entries: Sequence[Entry]) -> None:
        """Hand several entries over with one journal record (a batch of requests answered together).

        One pickle and one ``write`` per batch instead of per request: the
        journal was the largest part of the log's cost on the request path.
        """
        if not entries:
            return
        with self._lock:
            if self._journal is not None:
                journaled = [self._journal_form(e) for e in entries] if self._journal_form else list(entries)
                self._journal.write(journaled if len(journaled) > 1 else journaled[0])
            self._entries.extend(entries)
            self._num_buffered += sum(self._size(entry) for entry in entries)
            while self._num_buffered > self._max_rows and len(self._entries) > 1:
                dropped = self._entries.pop(0)
                self._num_buffered -= self._size(dropped)
                self.num_dropped += self._size(dropped)

    @property
    def num_buffered(self) -> int:
        return self._num_buffered

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written (0 on failure, entries kept)."""
        with self._flush_lock:
            if self._journal is not None:
                for orphan in self._journal.adopt_orphans():
                    self.append(orphan)
            with self._lock:
                entries, self._entries = self._entries, []
                num_rows, self._num_buffered = self._num_buffered, 0
                if entries and self._journal is not None:
                    self._journal.seal()
            if not entries:
                return 0
            try:
                table = self._build(entries)
                self._sink(table)
            except Exception as e:  # keep the entries; the next flush retries
                self.num_failed_flushes += 1
                self.last_error = f"{type(e).__name__}: {e}"
                _LOG.warning("log flush failed (%s); %d rows kept for retry", self.last_error, num_rows)
                with self._lock:
                    self._entries[:0] = entries
                    self._num_buffered += num_rows
                return 0
            if self._journal is not None:
                self._journal.written()
            self.num_written += table.num_rows
            return table.num_rows

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after a last flush; the journal goes only if everything was written."""
        self._stop.set()
        self._thread.join(timeout_s)
        self.flush()
        if self._journal is not None:
            with self._lock:
                everything_written = not self._entries
            self._journal.close(delete=everything_written)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.flush()
            except Exception:  # never let the thread die; flush() already logs
                time.sleep(self._interval_s)
