"""Data stage: ingest and validate, version in Delta Lake, split, preprocess, profile.

``raymlops.data`` is the import path; the implementation lives in private
submodules so it can change without breaking callers.

Example:
    >>> from raymlops import data
    >>> version = data.ingest("customers.csv", cfg)  # doctest: +SKIP
    >>> prepared = data.prepare(version, cfg)  # doctest: +SKIP
"""

from raymlops.data._demo import generate as generate_demo_data
from raymlops.data._features import compile_features
from raymlops.data._ingest import ingest
from raymlops.data._prepare import (
    FEATURES_COLUMN,
    SPLITS,
    PreparedData,
    build_preprocessor,
    holdout,
    prepare,
    read_version,
)
from raymlops.data._profile import CategoricalProfile, NumericProfile, ReferenceProfile
from raymlops.data._read import detect_format
from raymlops.data._results import DatasetVersion, RuleViolation, ValidationReport
from raymlops.data._schema import (
    ARROW_TYPES,
    ERRORS_COLUMN,
    RAW_COLUMN,
    ColumnRule,
    column_rules,
    table_schema,
    validate_batch,
)
from raymlops.data._store import get_version, head, list_versions

__all__ = [
    "ARROW_TYPES",
    "CategoricalProfile",
    "ColumnRule",
    "DatasetVersion",
    "ERRORS_COLUMN",
    "FEATURES_COLUMN",
    "NumericProfile",
    "PreparedData",
    "RAW_COLUMN",
    "ReferenceProfile",
    "RuleViolation",
    "SPLITS",
    "ValidationReport",
    "build_preprocessor",
    "column_rules",
    "compile_features",
    "detect_format",
    "generate_demo_data",
    "get_version",
    "head",
    "holdout",
    "ingest",
    "list_versions",
    "prepare",
    "read_version",
    "table_schema",
    "validate_batch",
]
