"""Request bodies generated from the config's schema, and 4xx bodies that name the field.

The schema that validates ingested rows also validates every request: a
record may hold the features (required unless nullable), the id, metadata and
time columns (logged, never given to the model), nothing else. Types are
strict (``"42"`` is not a number), NaN and infinity are refused, ranges and categories come from the
schema. Ray and FastAPI are not needed here, so the rules are unit-tested alone.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from raymlops.config import ColumnSpec, FeatureSpec, SchemaConfig

_PY_TYPES: dict[str, type] = {
    "float64": float,
    "float32": float,
    "int64": int,
    "int32": int,
    "bool": bool,
    "string": str,
    "timestamp": str,  # ISO 8601 text
}
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def record_model(schema: SchemaConfig, *, unknown_category: str = "reject") -> type[BaseModel]:
    """A pydantic model of one record: one field per feature, plus the id and metadata columns."""
    fields: dict[str, Any] = {}
    for feature in schema.features:
        fields[feature.name] = _field(
            feature, required=not feature.nullable, unknown_category=unknown_category
        )
    for column in schema.metadata_columns:
        fields[column.name] = _field(column, required=False, unknown_category="allow")
    if schema.id_column:
        fields[schema.id_column] = (int | str | None, None)
    if schema.time_column:
        fields[schema.time_column] = (_IsoTime | None, None)
    model: type[BaseModel] = create_model("Record", __config__=_STRICT, **fields)
    return model


def _iso_time(value: str) -> str:
    """A timestamp as ISO 8601 text (``2026-12-06T10:00:00Z``); a naive one is taken as UTC."""
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp, e.g. 2026-12-06T10:00:00Z") from None
    return value


_IsoTime = Annotated[str, AfterValidator(_iso_time)]


def _field(spec: FeatureSpec | ColumnSpec, *, required: bool, unknown_category: str) -> tuple[Any, Any]:
    annotation: Any = _IsoTime if spec.dtype == "timestamp" else _PY_TYPES[spec.dtype]
    constraints: dict[str, Any] = {}
    allowed = getattr(spec, "allowed", None)
    if allowed is not None and unknown_category == "reject":
        annotation = Literal[tuple(allowed)]
    if spec.dtype in ("float64", "float32", "int64", "int32"):
        if getattr(spec, "min", None) is not None:
            constraints["ge"] = spec.min
        if getattr(spec, "max", None) is not None:
            constraints["le"] = spec.max
    if not required:
        return (annotation | None, Field(None, **constraints))
    return (annotation, Field(..., **constraints))


# visible ASCII only: the id is echoed in the x-request-id response header, which must be latin-1
REQUEST_ID_PATTERN = r"^[!-~]+$"


def request_model(schema: SchemaConfig, *, unknown_category: str = "reject") -> type[BaseModel]:
    """``{"records": [record, ...], "request_id": optional}`` with at least one record."""
    record = record_model(schema, unknown_category=unknown_category)
    model: type[BaseModel] = create_model(
        "PredictRequest",
        __config__=_STRICT,
        records=(list[record], Field(..., min_length=1)),  # type: ignore[valid-type]
        request_id=(str | None, Field(None, min_length=1, max_length=200, pattern=REQUEST_ID_PATTERN)),
    )
    return model


def feedback_model(schema: SchemaConfig) -> type[BaseModel]:
    """``{"request_id": ..., "labels": [label, ...]}``: one label per record of that request."""
    label = schema.label
    annotation: Any = _PY_TYPES[label.dtype]
    if label.classes:
        annotation = Literal[tuple(label.classes)]
    model: type[BaseModel] = create_model(
        "FeedbackRequest",
        __config__=_STRICT,
        request_id=(str, Field(..., min_length=1, max_length=200, pattern=REQUEST_ID_PATTERN)),
        labels=(list[annotation], Field(..., min_length=1)),
    )
    return model


def problems(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "records[0].age", "reason": ...}``, one per problem."""
    out = []
    for item in error.errors(include_url=False):
        out.append({"field": field_path(item["loc"]), "reason": _reason(dict(item))})
    return out


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("literal[", "function-")):
            continue  # pydantic's union-branch labels are not fields
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _reason(item: dict[str, Any]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        return "unknown field; the schema does not declare it"
    if kind == "missing":
        return "required field is missing"
    if kind in ("too_short", "list_too_short"):
        return "must hold at least one item"
    if item.get("input", ...) is None:
        return "must not be null (the column is not nullable)"
    if kind == "finite_number":
        return "must be a finite number (NaN and infinity are refused)"
    if kind == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") == REQUEST_ID_PATTERN:
        return "must be visible ASCII characters only, no spaces (it is echoed in the x-request-id header)"
    message: str = item["msg"]
    return message.replace("Input should be", "must be").removeprefix("Value error, ")
