"""The ``data.schema`` section: columns, their kinds, dtypes and rules."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from raymlops.config._base import NUMERIC_DTYPES, Dtype, FieldProblem, Section


class ColumnSpec(Section):
    """A column kept in the table and validated but not fed to the model."""

    name: Annotated[str, Field(min_length=1)]
    dtype: Dtype = "string"
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str | int | bool, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise FieldProblem("min", f"min ({self.min}) must be <= max ({self.max})")
        if (self.min is not None or self.max is not None) and self.dtype not in NUMERIC_DTYPES:
            raise FieldProblem("min", f"a range needs a numeric dtype, got dtype {self.dtype!r}")
        if self.allowed is not None and len(self.allowed) == 0:
            raise FieldProblem("allowed", "an empty list allows nothing; omit it to allow any value")
        return self


class FeatureSpec(ColumnSpec):
    """A model input: numeric (scaled) or categorical (one-hot encoded)."""

    kind: Literal["numeric", "categorical"]
    dtype: Dtype = "float64"
    nullable: bool = False

    @model_validator(mode="after")
    def _check_kind(self) -> FeatureSpec:
        if self.kind == "numeric" and self.dtype not in NUMERIC_DTYPES:
            raise FieldProblem(
                "dtype", f"numeric features need one of {', '.join(NUMERIC_DTYPES)}; got {self.dtype!r}"
            )
        if self.kind == "categorical":
            if self.dtype in ("float64", "float32", "timestamp"):
                raise FieldProblem(
                    "dtype", f"categorical features need string, int64, int32 or bool; got {self.dtype!r}"
                )
            if self.allowed is None:
                raise FieldProblem(
                    "allowed",
                    "categorical features must list their allowed values, so that unseen "
                    "categories in new data and in requests are caught",
                )
        return self


class LabelSpec(Section):
    """The training target."""

    name: Annotated[str, Field(min_length=1)]
    dtype: Literal["int64", "int32", "float64", "float32", "string", "bool"] = "int64"
    classes: tuple[str | int | bool, ...] | None = None


class SchemaConfig(Section):
    """The columns of the training table; the same schema validates every request."""

    features: tuple[FeatureSpec, ...]
    label: LabelSpec
    id_column: str | None = None
    id_dtype: Literal["string", "int64"] = "string"
    time_column: str | None = None
    metadata_columns: tuple[ColumnSpec, ...] = ()
    slice_columns: tuple[str, ...] = ()
    sensitive_columns: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> SchemaConfig:
        if not self.features:
            raise FieldProblem("features", "declare at least one feature")
        names = [f.name for f in self.features] + [c.name for c in self.metadata_columns]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise FieldProblem("features", f"column {name!r} is declared twice")
            seen.add(name)
        reserved = {name for name in (self.label.name, self.id_column, self.time_column) if name}
        clash = sorted(reserved & seen)
        if clash:
            raise FieldProblem(
                "features", f"{clash} is the label, id or time column and cannot also be a feature"
            )
        if self.id_column is not None and self.id_column == self.time_column:
            raise FieldProblem("time_column", "the id and time columns must differ")
        for key in ("slice_columns", "sensitive_columns"):
            for name in getattr(self, key):
                if name not in seen:
                    raise FieldProblem(
                        key,
                        f"{name!r} is not a declared feature or metadata column; "
                        f"declared: {', '.join(sorted(seen))}",
                    )
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric_features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == "numeric")

    @property
    def categorical_features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == "categorical")
