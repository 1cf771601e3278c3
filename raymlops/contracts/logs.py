"""What the endpoint, the monitor and the retrain job exchange through the inference log and feedback.

Replicas (``raymlops.serve``) write these tables, the drift monitor
(``raymlops.monitor``) reads and extends them, and a retrain job joins the
two: their column names, Arrow schemas and Delta table properties are one
contract, kept here rather than in one stage's private module.
"""

from __future__ import annotations

import pyarrow as pa

from raymlops.config import ProjectConfig
from raymlops.data import ARROW_TYPES, column_rules

__all__ = [
    "FEEDBACK_TABLE_PROPERTIES",
    "LOG_TABLE_PROPERTIES",
    "MODEL_MS",
    "MONITOR_ROW",
    "RECORD_INDEX",
    "REQUEST_ID",
    "ROUTE_CANARY",
    "ROUTE_CANARY_FALLBACK",
    "ROUTE_CHAMPION",
    "TS",
    "feedback_schema",
    "inference_log_schema",
    "record_columns",
]

REQUEST_ID = "request_id"
RECORD_INDEX = "record_index"
TS = "ts"
MONITOR_ROW = "monitor_row"
MODEL_MS = "model_ms"
# routes a logged row may carry: who answered, and why
ROUTE_CHAMPION = "champion"
ROUTE_CANARY = "canary"
ROUTE_CANARY_FALLBACK = "canary_fallback"  # the challenger failed on these rows: the champion answered


def inference_log_schema(config: ProjectConfig) -> pa.Schema:
    """request_id, record_index, ts, the record's columns, the model version and its answer."""
    schema = config.data.schema
    label_type = pa.float64() if config.model.task == "regression" else ARROW_TYPES[schema.label.dtype]
    columns = [
        r
        for r in column_rules(schema, include_label=False)
        if r.role in ("feature", "metadata", "id", "time")
    ]
    return pa.schema(
        [
            pa.field(REQUEST_ID, pa.string()),
            pa.field(RECORD_INDEX, pa.int32()),
            pa.field(TS, pa.timestamp("us", tz="UTC")),
            *(pa.field(r.name, r.arrow_type) for r in columns),
            pa.field("model_version", pa.int64()),
            pa.field("route", pa.string()),  # ROUTE_CHAMPION | ROUTE_CANARY | ROUTE_CANARY_FALLBACK
            pa.field("prediction", label_type),
            pa.field("probability", pa.float64()),  # binary: of the positive class
            pa.field("shadow_version", pa.int64()),
            pa.field("shadow_prediction", label_type),
            # the model call of the row's batch for model_version, ms (canary judges compare the p95s)
            pa.field(MODEL_MS, pa.float64()),
            # the drift monitor's running row number (null when a replica wrote the row itself)
            pa.field(MONITOR_ROW, pa.int64()),
        ]
    )


def record_columns(schema: pa.Schema) -> list[str]:
    """The request's own columns in an inference-log schema (between ``ts`` and ``model_version``)."""
    names = schema.names
    return names[names.index(TS) + 1 : names.index("model_version")]


def feedback_schema(config: ProjectConfig) -> pa.Schema:
    label = config.data.schema.label
    label_type = pa.float64() if config.model.task == "regression" else ARROW_TYPES[label.dtype]
    return pa.schema(
        [
            pa.field(REQUEST_ID, pa.string()),
            pa.field(RECORD_INDEX, pa.int32()),
            pa.field(TS, pa.timestamp("us", tz="UTC")),
            pa.field("label", label_type),
        ]
    )


# Delta table properties of the logs. Statistics only for the columns their readers filter
# on (a file's min/max lets a read skip it), and a checkpoint every 25 commits instead of
# 100, which about halves a commit's CPU once a table has a few hundred
# (benchmarks/README.md, "Figures behind design choices").
LOG_TABLE_PROPERTIES = {
    "delta.dataSkippingStatsColumns": f"{REQUEST_ID},{TS},{MONITOR_ROW}",
    "delta.checkpointInterval": "25",
}
FEEDBACK_TABLE_PROPERTIES = {
    "delta.dataSkippingStatsColumns": f"{REQUEST_ID},{TS}",
    "delta.checkpointInterval": "25",
}
