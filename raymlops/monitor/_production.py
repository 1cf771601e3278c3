"""Production rows with their late labels: what a retrain adds to the training table.

The inference log holds every answered record (request id, record index, the
record's columns); the feedback table holds the labels sent later to
``POST /feedback``. Joined on (request id, record index), they are new
training rows in the schema of the training table. Ray-free: a retrain job
calls this before it starts any Ray work.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from raymlops.config import ProjectConfig
from raymlops.contracts.logs import RECORD_INDEX, REQUEST_ID, TS
from raymlops.data import column_rules, table_schema

if TYPE_CHECKING:
    import pyarrow.dataset as pads


@dataclasses.dataclass(frozen=True)
class LabelledRows:
    """Labelled production rows, and the newest label among them (the next retrain starts after it)."""

    table: pa.Table  # the training table's columns
    labels_through_us: int | None
    num_labels: int  # labels read (some may have no logged prediction)


def labelled_rows(config: ProjectConfig, *, labels_after_us: int | None = None) -> LabelledRows:
    """Join the labels sent after ``labels_after_us`` to the logged records they belong to.

    A request id labelled twice keeps its latest label.
    """
    import pyarrow.dataset as pads

    schema = config.data.schema
    target = table_schema(column_rules(schema, include_label=True))
    label_name = schema.label.name
    empty = target.empty_table()
    after = labels_after_us if labels_after_us is not None else -1
    labels = read_delta(
        config.feedback_uri,
        [REQUEST_ID, RECORD_INDEX, TS, "label"],
        pads.field(TS) > utc_us(after),
    )
    if labels is None or labels.num_rows == 0:
        return LabelledRows(empty, None, 0)
    through = int(pc.max(pc.cast(labels.column(TS), pa.int64())).as_py())
    labels = _one_per_key(labels.sort_by(TS), "max")  # the latest label of each record
    labels = labels.drop_columns([TS]).rename_columns([REQUEST_ID, RECORD_INDEX, label_name])
    logged_columns = [c for c in target.names if c not in (label_name, schema.time_column)]
    time_column = schema.time_column or ""
    time_logged = bool(time_column) and _has_column(config.inference_log_uri, time_column)
    logged = read_delta(
        config.inference_log_uri,
        [REQUEST_ID, RECORD_INDEX, TS, *logged_columns, *([time_column] if time_logged else [])],
        pads.field(REQUEST_ID).isin(labels.column(REQUEST_ID).unique()),
    )
    if logged is None or logged.num_rows == 0:
        return LabelledRows(empty, through, labels.num_rows)
    logged = _one_per_key(logged, "min")  # the log is de-duplicated; this guards older logs
    joined = logged.join(labels, [REQUEST_ID, RECORD_INDEX], join_type="inner")
    if schema.time_column:
        # the request's own time where it sent one, else when the endpoint answered it
        answered = joined.column(TS)
        given = joined.column(time_column).cast(answered.type) if time_logged else None
        time = pc.coalesce(given, answered) if given is not None else answered
        if time_logged:
            joined = joined.drop_columns([time_column])
        joined = joined.append_column(schema.time_column, time)
    table = joined.select(target.names).cast(target)
    return LabelledRows(table, through, labels.num_rows)


def _has_column(uri: str, name: str) -> bool:
    """Whether a Delta table's schema has a column (an older inference log may not)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return name in [field.name for field in DeltaTable(uri).schema().fields]
    except TableNotFoundError:
        return False


def _one_per_key(table: pa.Table, pick: str) -> pa.Table:
    """One row per (request id, record index): the first (``min``) or last (``max``) in table order."""
    grouped = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    chosen = grouped.group_by([REQUEST_ID, RECORD_INDEX]).aggregate([("_i", pick)])
    return table.take(chosen.column(f"_i_{pick}"))


def read_delta(uri: str, columns: list[str] | None, filter: pads.Expression) -> pa.Table | None:
    """Rows of a Delta table matching ``filter`` (None when the table does not exist yet)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(uri)
    except TableNotFoundError:
        return None
    return table.to_pyarrow_dataset().to_table(columns=columns, filter=filter)


def utc_us(value: int) -> pa.Scalar:
    """Microseconds since the epoch as a UTC timestamp, to compare with the logs' ``ts`` column."""
    return pa.scalar(value, pa.timestamp("us", tz="UTC"))


def log_since(config: ProjectConfig, since_us: int, columns: list[str] | None = None) -> pa.Table | None:
    """The inference-log rows written since ``since_us`` (µs since the epoch; None: no log yet)."""
    import pyarrow.dataset as pads

    return read_delta(config.inference_log_uri, columns, pads.field(TS) >= utc_us(since_us))


def feedback_since(config: ProjectConfig, since_us: int) -> pa.Table | None:
    """The feedback labels sent since ``since_us`` (µs since the epoch; None: none yet)."""
    import pyarrow.dataset as pads

    return read_delta(config.feedback_uri, None, pads.field(TS) >= utc_us(since_us))
