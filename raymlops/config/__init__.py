"""One YAML file → a validated, frozen ``ProjectConfig``.

Every stage reads its section from here, so a typo fails on the driver before
any Ray resource is requested. Unknown keys are rejected (a misspelt key that
is silently ignored is worse than an error). Every problem becomes a
``ConfigError`` naming the dotted key path, the value given and what is allowed.

Example:
    >>> from raymlops.config import load_config
    >>> cfg = load_config("configs/demo.yaml")  # doctest: +SKIP
    >>> cfg.training.num_workers  # doctest: +SKIP
    2

Modules: ``_base`` (strict frozen sections), ``_schema`` (``data.schema``),
``_sections`` (every other section), ``_project`` (``ProjectConfig``),
``_load`` (``load_config``, ``parse_config`` and their error messages).
"""

from raymlops.config._base import ENV_HOME, ENV_JOB_RAY_ADDRESS, ENV_RAY_ADDRESS, NUMERIC_DTYPES
from raymlops.config._load import load_config, parse_config
from raymlops.config._project import ProjectConfig
from raymlops.config._schema import ColumnSpec, FeatureSpec, LabelSpec, SchemaConfig
from raymlops.config._sections import (
    CLASSIFICATION_METRICS,
    DRIFT_TESTS,
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
    TUNABLE,
    CanaryConfig,
    DataConfig,
    GateConfig,
    MetricRule,
    ModelConfig,
    MonitoringConfig,
    PreprocessingConfig,
    RetrainingConfig,
    RuntimeConfig,
    SearchDimension,
    ServingConfig,
    SplitConfig,
    StorageConfig,
    TrainingConfig,
    TuningConfig,
    metrics_for,
    tracking_problem,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "DRIFT_TESTS",
    "ENV_HOME",
    "ENV_JOB_RAY_ADDRESS",
    "ENV_RAY_ADDRESS",
    "LOWER_IS_BETTER",
    "NUMERIC_DTYPES",
    "REGRESSION_METRICS",
    "TUNABLE",
    "CanaryConfig",
    "ColumnSpec",
    "DataConfig",
    "FeatureSpec",
    "GateConfig",
    "LabelSpec",
    "MetricRule",
    "ModelConfig",
    "MonitoringConfig",
    "PreprocessingConfig",
    "ProjectConfig",
    "RetrainingConfig",
    "RuntimeConfig",
    "SchemaConfig",
    "SearchDimension",
    "ServingConfig",
    "SplitConfig",
    "StorageConfig",
    "TrainingConfig",
    "TuningConfig",
    "load_config",
    "metrics_for",
    "parse_config",
    "tracking_problem",
]
