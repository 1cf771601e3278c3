"""Data stage: ingest and validate, version in Delta Lake, split, preprocess, profile.

``raymlops.data`` is the import path; the implementation lives in private
submodules so it can change without breaking callers.

Example:
    >>> from raymlops import data
    >>> version = data.ingest("customers.csv", cfg)  # doctest: +SKIP
    >>> prepared = data.prepare(version, cfg)  # doctest: +SKIP
"""

from raymlops.data._demo import generate as generate_demo_data
from raymlops.data._ingest import detect_format, ingest
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
from raymlops.data._results import DatasetVersion, RuleViolation, ValidationReport
from raymlops.data._store import get_version, list_versions

__all__ = [
    "CategoricalProfile",
    "DatasetVersion",
    "FEATURES_COLUMN",
    "NumericProfile",
    "PreparedData",
    "ReferenceProfile",
    "RuleViolation",
    "SPLITS",
    "ValidationReport",
    "build_preprocessor",
    "detect_format",
    "generate_demo_data",
    "get_version",
    "holdout",
    "ingest",
    "list_versions",
    "prepare",
    "read_version",
]
