"""What every config section shares: strict, frozen sections and problems that blame one field."""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, ConfigDict

ENV_HOME = "RAYMLOPS_HOME"
ENV_RAY_ADDRESS = "RAY_ADDRESS"
# The cluster a job raymlops submitted must attach to. Ray's job supervisor replaces a job's
# RAY_ADDRESS with the latest `ray start` cluster on its node, which on a laptop running
# another Ray is not the cluster that ran the job; this variable, set by raymlops on every
# job it submits, wins over RAY_ADDRESS.
ENV_JOB_RAY_ADDRESS = "RAYMLOPS_RAY_ADDRESS"

Dtype = Literal["float64", "float32", "int64", "int32", "bool", "string", "timestamp"]
NUMERIC_DTYPES = ("float64", "float32", "int64", "int32")


class FieldProblem(ValueError):
    """Raised inside a model validator to blame one field rather than the whole section."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def suggest(value: str, allowed: tuple[str, ...] | list[str]) -> str:
    """ " (did you mean 'x'?)" for the closest allowed value, or nothing."""
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
