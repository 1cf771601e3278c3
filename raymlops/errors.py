"""The raymlops exception tree.

Every error raymlops raises on purpose is a ``RayMLOpsError``. Each one also
subclasses the builtin it specialises, so ``except ValueError`` keeps working
for callers that do not know raymlops::

    RayMLOpsError (Exception)
    ├── ConfigError (ValueError)             a key or value in the YAML config is wrong
    ├── DataError (ValueError)
    │   ├── DataSourceError (FileNotFoundError-like read failure, ValueError)
    │   ├── DataValidationError              rows or columns break the schema; carries a report
    │   └── DataIntegrityError               a stored version no longer matches its digest
    ├── VersionNotFoundError (LookupError)   a data version / model version does not exist
    ├── RuntimeStartError (RuntimeError)     Ray or MLflow could not be started or reached
    ├── InsufficientResourcesError (RuntimeError)  the cluster cannot hold what the config asks for
    ├── TrainingError (RuntimeError)         a training run failed beyond its allowed failures
    ├── PromotionError (RuntimeError)        a promotion or rollback was refused (gate, no previous)
    ├── MonitoringError (RuntimeError)       no champion, nothing logged, or no monitor running
    └── StorageError (OSError)               the storage home or a table cannot be written

Messages say what failed (with the values), the likely cause, and the fix.
Errors cross process boundaries (Ray tasks, jobs), so every class whose
constructor takes more than a message defines ``__reduce__``.
"""

from __future__ import annotations

from typing import Any, Protocol


class _Report(Protocol):
    """What a ``DataValidationError`` needs of ``raymlops.data.ValidationReport`` (no import: no cycle)."""

    @property
    def source_uri(self) -> str: ...

    def render(self) -> str: ...


__all__ = [
    "ConfigError",
    "DataError",
    "DataIntegrityError",
    "DataSourceError",
    "DataValidationError",
    "InsufficientResourcesError",
    "JobExistsError",
    "MonitoringError",
    "PromotionError",
    "RayMLOpsError",
    "RegistryUnavailableError",
    "RuntimeStartError",
    "StorageError",
    "TrainingError",
    "VersionNotFoundError",
]


class RayMLOpsError(Exception):
    """Base of every error raymlops raises on purpose."""


class ConfigError(RayMLOpsError, ValueError):
    """The project config is invalid.

    Attributes:
        problems: one ``(dotted_path, message)`` pair per problem found, so a
            user fixes them all in one edit instead of one per run.
        source: the config file, when the config came from one.
    """

    def __init__(self, problems: list[tuple[str, str]] | str, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"  - {path}: {msg}" if path else f"  - {msg}" for path, msg in self.problems]
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"invalid config{where} ({len(self.problems)} {noun}):\n" + "\n".join(lines))

    @property
    def paths(self) -> list[str]:
        """The dotted key paths that have a problem, in the order found."""
        return [path for path, _ in self.problems]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.source))


class DataError(RayMLOpsError, ValueError):
    """Base for problems with input data."""


class DataSourceError(DataError):
    """A data source cannot be found or read (missing file, unknown format)."""


class DataValidationError(DataError):
    """Input data breaks the schema declared in the config.

    Attributes:
        report: the full ``ValidationReport``: every rule violated, with counts
            and example rows.
    """

    def __init__(self, report: _Report) -> None:
        self.report = report
        super().__init__(
            f"{report.source_uri}: data does not match the schema; nothing was written.\n"
            f"{report.render()}\n"
            "Fix the rows or the schema in the config, or set data.on_invalid: quarantine "
            "to write the valid rows and set the invalid ones aside."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.report,))


class DataIntegrityError(DataError):
    """Stored data no longer matches the digest recorded when it was written."""


class VersionNotFoundError(RayMLOpsError, LookupError):
    """A requested data or model version (or a model version's gate report) does not exist."""


class RuntimeStartError(RayMLOpsError, RuntimeError):
    """Ray or MLflow could not be started or reached."""


class InsufficientResourcesError(RayMLOpsError, RuntimeError):
    """The cluster does not have the CPUs/GPUs a run asks for; raised before anything starts."""


class TrainingError(RayMLOpsError, RuntimeError):
    """A training run failed more often than ``training.max_failures`` allows."""


class PromotionError(RayMLOpsError, RuntimeError):
    """An alias move was refused: the gate failed, its report is stale, or nothing to roll back to."""


class MonitoringError(RayMLOpsError, RuntimeError):
    """The drift monitor cannot answer: no champion to compare with, nothing logged, or no monitor running."""


class RegistryUnavailableError(RayMLOpsError, ConnectionError):
    """The model registry did not answer (server down, network, timeout): not the same as "no model"."""


class JobExistsError(MonitoringError):
    """The Jobs API already has a job with this submission id (a retrain trigger submitted twice)."""


class StorageError(RayMLOpsError, OSError):
    """The storage home or a table location cannot be written or read."""
