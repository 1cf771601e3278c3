"""raymlops: the ML lifecycle on Ray, from versioned data to a self-retraining endpoint.

Importing raymlops starts nothing and touches no disk; see ``raymlops.runtime``.
Heavy submodules (``data``, which imports Ray Data) are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from raymlops.config import ProjectConfig, load_config, parse_config
from raymlops.errors import (
    ConfigError,
    DataError,
    DataIntegrityError,
    DataSourceError,
    DataValidationError,
    InsufficientResourcesError,
    JobExistsError,
    MonitoringError,
    PromotionError,
    RayMLOpsError,
    RegistryUnavailableError,
    RuntimeStartError,
    StorageError,
    TrainingError,
    VersionNotFoundError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DataIntegrityError",
    "DataSourceError",
    "DataValidationError",
    "InsufficientResourcesError",
    "JobExistsError",
    "MonitoringError",
    "ProjectConfig",
    "PromotionError",
    "RayMLOpsError",
    "RegistryUnavailableError",
    "RuntimeStartError",
    "StorageError",
    "TrainingError",
    "VersionNotFoundError",
    "__version__",
    "data",
    "evaluate",
    "load_config",
    "monitor",
    "parse_config",
    "pipeline",
    "registry",
    "runtime",
    "serve",
    "train",
    "tune",
]

_LAZY = {"data", "evaluate", "monitor", "pipeline", "registry", "runtime", "serve", "train", "tune"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"raymlops.{name}")
    raise AttributeError(f"module 'raymlops' has no attribute {name!r}")
