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
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raymlops.contracts import StorageLocations, is_remote, normalise_home, scheme_of
from raymlops.errors import ConfigError

__all__ = [
    "ColumnSpec",
    "DataConfig",
    "FeatureSpec",
    "CLASSIFICATION_METRICS",
    "DRIFT_TESTS",
    "GateConfig",
    "LabelSpec",
    "LOWER_IS_BETTER",
    "MetricRule",
    "ModelConfig",
    "MonitoringConfig",
    "PreprocessingConfig",
    "ProjectConfig",
    "REGRESSION_METRICS",
    "RetrainingConfig",
    "RuntimeConfig",
    "SchemaConfig",
    "ServingConfig",
    "SplitConfig",
    "StorageConfig",
    "TrainingConfig",
    "TuningConfig",
    "load_config",
    "metrics_for",
    "parse_config",
]

ENV_HOME = "RAYMLOPS_HOME"
ENV_RAY_ADDRESS = "RAY_ADDRESS"
# The cluster a job raymlops submitted must attach to. Ray's job supervisor replaces a job's
# RAY_ADDRESS with the latest `ray start` cluster on its node, which on a laptop running
# another Ray is not the cluster that ran the job; this variable, set by raymlops on every
# job it submits, wins over RAY_ADDRESS.
ENV_JOB_RAY_ADDRESS = "RAYMLOPS_RAY_ADDRESS"

Dtype = Literal["float64", "float32", "int64", "int32", "bool", "string", "timestamp"]
NUMERIC_DTYPES = ("float64", "float32", "int64", "int32")


class _FieldProblem(ValueError):
    """Raised inside a model validator to blame one field rather than the whole section."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --------------------------------------------------------------------------- schema


class ColumnSpec(_Section):
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
            raise _FieldProblem("min", f"min ({self.min}) must be <= max ({self.max})")
        if (self.min is not None or self.max is not None) and self.dtype not in NUMERIC_DTYPES:
            raise _FieldProblem("min", f"a range needs a numeric dtype, got dtype {self.dtype!r}")
        if self.allowed is not None and len(self.allowed) == 0:
            raise _FieldProblem("allowed", "an empty list allows nothing; omit it to allow any value")
        return self


class FeatureSpec(ColumnSpec):
    """A model input: numeric (scaled) or categorical (one-hot encoded)."""

    kind: Literal["numeric", "categorical"]
    dtype: Dtype = "float64"
    nullable: bool = False

    @model_validator(mode="after")
    def _check_kind(self) -> FeatureSpec:
        if self.kind == "numeric" and self.dtype not in NUMERIC_DTYPES:
            raise _FieldProblem(
                "dtype", f"numeric features need one of {', '.join(NUMERIC_DTYPES)}; got {self.dtype!r}"
            )
        if self.kind == "categorical":
            if self.dtype in ("float64", "float32", "timestamp"):
                raise _FieldProblem(
                    "dtype", f"categorical features need string, int64, int32 or bool; got {self.dtype!r}"
                )
            if self.allowed is None:
                raise _FieldProblem(
                    "allowed",
                    "categorical features must list their allowed values, so that unseen "
                    "categories in new data and in requests are caught",
                )
        return self


class LabelSpec(_Section):
    """The training target."""

    name: Annotated[str, Field(min_length=1)]
    dtype: Literal["int64", "int32", "float64", "float32", "string", "bool"] = "int64"
    classes: tuple[str | int | bool, ...] | None = None


class SchemaConfig(_Section):
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
            raise _FieldProblem("features", "declare at least one feature")
        names = [f.name for f in self.features] + [c.name for c in self.metadata_columns]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise _FieldProblem("features", f"column {name!r} is declared twice")
            seen.add(name)
        reserved = {name for name in (self.label.name, self.id_column, self.time_column) if name}
        clash = sorted(reserved & seen)
        if clash:
            raise _FieldProblem(
                "features", f"{clash} is the label, id or time column and cannot also be a feature"
            )
        if self.id_column is not None and self.id_column == self.time_column:
            raise _FieldProblem("time_column", "the id and time columns must differ")
        for key in ("slice_columns", "sensitive_columns"):
            for name in getattr(self, key):
                if name not in seen:
                    raise _FieldProblem(
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


# --------------------------------------------------------------------------- sections


class StorageConfig(_Section):
    """Where every persistent thing lives; moving to a cluster changes these URIs only."""

    home: str = "./.raymlops"  # a folder, file://, s3://, gs:// or abfss://
    mlflow_tracking_uri: str | None = None  # default: sqlite:///<home>/mlflow.db (a local home only)
    mlflow_artifact_uri: str | None = None  # default: the tracking server's own artifact root
    ray_address: str | None = None  # None: start an embedded local Ray head

    @model_validator(mode="after")
    def _check(self) -> StorageConfig:
        try:
            home = normalise_home(self.home)
        except ValueError as e:
            raise _FieldProblem("home", str(e)) from None
        problem = tracking_problem(home, self.mlflow_tracking_uri)
        if problem:
            raise _FieldProblem("mlflow_tracking_uri", problem)
        artifacts = self.mlflow_artifact_uri
        if artifacts is not None and not is_remote(artifacts) and is_remote(home):
            raise _FieldProblem(
                "mlflow_artifact_uri",
                f"{artifacts!r} is a local path while storage.home is {home}: other "
                "nodes could not load the models; use an object-store URI or leave it unset",
            )
        return self


def tracking_problem(home_uri: str, tracking_uri: str | None) -> str | None:
    """Why this tracking URI cannot serve this home, or None: a remote home needs an MLflow server.

    SQLite (the default beside a local home) is a file on one machine: with the
    data in a bucket and jobs on any node, the registry would be on one disk.
    """
    if not is_remote(home_uri):
        return None
    if (
        tracking_uri is None
        or tracking_uri.startswith("sqlite:")
        or scheme_of(tracking_uri) in (None, "file")
    ):
        given = "unset (SQLite under the home)" if tracking_uri is None else repr(tracking_uri)
        return (
            f"storage.mlflow_tracking_uri is {given} while storage.home is {home_uri}: a local MLflow store "
            "cannot serve a home every node shares. Set storage.mlflow_tracking_uri to an MLflow server "
            "(http://HOST:5000 or https://…), or use a local storage.home"
        )
    return None


class RuntimeConfig(_Section):
    """How the embedded local Ray head is started (ignored when attaching to a cluster)."""

    num_cpus: Annotated[int, Field(ge=1, le=1024)] = 4
    dashboard_host: str = "127.0.0.1"
    dashboard_port: Annotated[int, Field(ge=1, le=65535)] = 8265
    metrics_export_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    object_store_memory_mb: Annotated[int, Field(ge=75)] | None = None
    namespace: Annotated[str, Field(min_length=1)] = "raymlops"


class DataConfig(_Section):
    source: str | None = None
    format: Literal["auto", "csv", "parquet", "delta"] = "auto"
    table: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$")] = "training"
    table_uri: str | None = None  # default: <home>/data/<table>
    mode: Literal["append", "overwrite"] = "append"
    on_invalid: Literal["fail", "quarantine"] = "fail"
    max_example_rows: Annotated[int, Field(ge=1, le=100)] = 5
    schema_: Annotated[SchemaConfig, Field(alias="schema")]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def schema(self) -> SchemaConfig:  # type: ignore[override]
        return self.schema_


class SplitConfig(_Section):
    train_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.7
    validation_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.15
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    seed: int = 42

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        total = self.train_fraction + self.validation_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise _FieldProblem(
                "test_fraction",
                f"train_fraction + validation_fraction + test_fraction must be 1.0, got {total:g}",
            )
        return self


class PreprocessingConfig(_Section):
    numeric_scaler: Literal["standard", "minmax", "none"] = "standard"
    numeric_imputer: Literal["mean", "median", "none"] = "mean"
    categorical_encoder: Literal["onehot"] = "onehot"
    profile_num_bins: Annotated[int, Field(ge=2, le=1000)] = 10
    profile_sample_size: Annotated[int, Field(ge=0, le=1_000_000)] = 5000


class ModelConfig(_Section):
    task: Literal["binary", "multiclass", "regression"] = "binary"
    hidden_sizes: tuple[Annotated[int, Field(ge=1)], ...] = (64, 32)
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    factory: Annotated[str, Field(pattern=r"^[\w.]+:\w+$")] | None = None


class TrainingConfig(_Section):
    num_workers: Annotated[int, Field(ge=1, le=4096)] = 1
    use_gpu: bool = False
    cpus_per_worker: Annotated[float, Field(gt=0.0)] = 0.5
    resources_per_worker: dict[str, float] = Field(default_factory=dict)
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 256
    learning_rate: Annotated[float, Field(gt=0.0, le=10.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    early_stopping_patience: Annotated[int, Field(ge=0)] = 3  # 0 disables
    max_failures: Annotated[int, Field(ge=0)] = 2
    seed: int = 0


class SearchDimension(_Section):
    """One tuned hyperparameter: sampled (uniform, loguniform, choice, randint) or every value (grid)."""

    type: Literal["uniform", "loguniform", "choice", "randint", "grid"]
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchDimension:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise _FieldProblem("values", f"a {self.type!r} dimension needs a non-empty 'values' list")
            return self
        if self.low is None or self.high is None:
            raise _FieldProblem("low", f"a {self.type!r} dimension needs both 'low' and 'high'")
        if self.low >= self.high:
            raise _FieldProblem("high", f"high ({self.high}) must be > low ({self.low})")
        if self.type == "loguniform" and self.low <= 0:
            raise _FieldProblem("low", f"loguniform needs low > 0, got {self.low}")
        return self


TUNABLE = ("learning_rate", "weight_decay", "batch_size", "dropout", "hidden_sizes", "epochs")


class TuningConfig(_Section):
    num_samples: Annotated[int, Field(ge=1)] = 4
    max_concurrent_trials: Annotated[int, Field(ge=1)] = 2
    time_budget_s: Annotated[float, Field(gt=0)] | None = None
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    grace_period: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[float, Field(gt=1.0)] = 2.0
    search_space: dict[str, SearchDimension] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> TuningConfig:
        for key in self.search_space:
            if key not in TUNABLE:
                raise _FieldProblem(
                    "search_space", f"cannot tune {key!r}; tunable keys: {', '.join(TUNABLE)}"
                )
        return self


CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "log_loss", "calibration_error")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "calibration_error", "rmse", "mae"})


DRIFT_TESTS = {"numeric": ("psi", "ks", "wasserstein"), "categorical": ("chi2", "jensen_shannon")}


def metrics_for(task: str) -> tuple[str, ...]:
    """The holdout metrics raymlops computes for a ``model.task``."""
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


class MetricRule(_Section):
    """One gate rule, modelled on MLflow's ``MetricThreshold``.

    ``threshold`` is an absolute floor (a ceiling when lower is better) and
    applies to every challenger; the other three compare with the champion on
    the same holdout rows and are skipped when there is no champion yet.
    """

    metric: str
    threshold: float | None = None
    min_absolute_change: float | None = None  # challenger must beat the champion by this much
    min_relative_change: float | None = None  # … or by this share of the champion's value
    max_regression: Annotated[float, Field(ge=0.0)] | None = None  # may be worse by at most this
    greater_is_better: bool | None = None  # None: known from the metric (log_loss, rmse … are lower-better)

    @property
    def higher_is_better(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        return self.metric not in LOWER_IS_BETTER


class GateConfig(_Section):
    """What a challenger must show on the holdout before it may become champion."""

    rules: tuple[MetricRule, ...] | None = None  # None: roc_auc (classification) or r2 (regression)
    slice_metric: str | None = None  # None: accuracy (classification) or rmse (regression)
    slice_floors: dict[str, float] = Field(default_factory=dict)  # slice column -> floor per slice
    slice_num_bins: Annotated[int, Field(ge=2, le=20)] = 4  # numeric slice columns: quantile bins
    min_slice_rows: Annotated[int, Field(ge=1)] = 30
    max_fairness_gap: Annotated[float, Field(ge=0.0)] | None = None  # slice_metric, best - worst group
    max_positive_rate_gap: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_importance_share: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    importance_metric: str | None = None  # None: log_loss (classification) or rmse (regression)
    importance_repeats: Annotated[int, Field(ge=1, le=50)] = 3
    importance_max_rows: Annotated[int, Field(ge=10)] = 5000
    # classification: a challenger whose expected calibration error is above this fails (null: none);
    # a coarse guard against grossly wrong probabilities, tighten it where they are acted on
    max_calibration_error: Annotated[float, Field(gt=0.0, le=1.0)] | None = 0.25
    interval_resamples: Annotated[int, Field(ge=0, le=10_000)] = 200  # bootstrap for 95 % intervals; 0: none
    min_holdout_rows: Annotated[int, Field(ge=1)] = 200  # fewer: the report warns how little it can tell
    seed: int = 0


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    route_prefix: str = "/"
    num_replicas: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 2
    target_ongoing_requests: Annotated[float, Field(gt=0)] = 8.0
    upscale_delay_s: Annotated[float, Field(ge=0)] = 10.0
    downscale_delay_s: Annotated[float, Field(ge=0)] = 60.0
    max_ongoing_requests: Annotated[int, Field(ge=1)] = 64
    num_cpus_per_replica: Annotated[float, Field(ge=0)] = 0.25
    max_batch_size: Annotated[int, Field(ge=1)] = 32
    batch_wait_timeout_s: Annotated[float, Field(ge=0)] = 0.005
    max_rows_per_request: Annotated[int, Field(ge=1)] = 1000
    unknown_category: Literal["reject", "allow"] = "reject"
    ingress: Literal["haproxy", "python"] = "haproxy"  # Ray Serve's HTTP ingress on an embedded Ray
    # where Serve runs its HTTP proxies: EveryNode (Ray's default: any node answers on `port`),
    # HeadOnly (one entry point; also for several Ray nodes sharing one machine and so one port)
    proxy_location: Literal["EveryNode", "HeadOnly"] = "EveryNode"
    # HAProxy's stats page and Prometheus frontend, bound on `host` (the next free port when taken)
    haproxy_stats_port: Annotated[int, Field(ge=1, le=65535)] = 8404
    haproxy_metrics_port: Annotated[int, Field(ge=1, le=65535)] = 9101
    # how long a stopping replica stays reachable behind HAProxy (Ray's 30 s suits cloud load balancers;
    # on one node HAProxy deregisters it at once and retries refused connections elsewhere)
    drain_period_s: Annotated[float, Field(ge=0)] = 5.0
    auth_token_env: str | None = None  # name of the env var holding the bearer token
    access_log: bool = False
    max_request_bytes: Annotated[int, Field(ge=1024)] = 4_000_000  # larger bodies → 413
    watch_interval_s: Annotated[float, Field(gt=0)] = 2.0  # how often replicas re-read the rollout
    inference_log: bool = True  # hand every prediction to the inference log
    log_flush_interval_s: Annotated[float, Field(gt=0)] = 1.0
    # write-ahead journal per replica: answered requests reach the log even if the replica is killed
    log_journal: bool = True
    log_max_buffer_rows: Annotated[int, Field(ge=1)] = (
        100_000  # beyond this, oldest rows are dropped (counted)
    )

    @model_validator(mode="after")
    def _check(self) -> ServingConfig:
        if self.min_replicas > self.max_replicas:
            raise _FieldProblem(
                "min_replicas",
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})",
            )
        if not self.route_prefix.startswith("/"):
            raise _FieldProblem("route_prefix", f"must start with '/', got {self.route_prefix!r}")
        return self


class MonitoringConfig(_Section):
    """The drift monitor: windows of live rows against the training reference, and when to retrain.

    With ``enabled`` the endpoint hands its inference log to the ``DriftMonitor``
    actor, which writes it (de-duplicated) and judges every closed window.
    """

    enabled: bool = True
    check_interval_s: Annotated[float, Field(gt=0)] = 10.0
    window_size: Annotated[int, Field(ge=1)] = 1000
    min_window_size: Annotated[int, Field(ge=1)] = 200
    window_duration_s: Annotated[float, Field(gt=0)] | None = None
    drift_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    consecutive_windows: Annotated[int, Field(ge=1)] = 2
    critical_features: tuple[str, ...] = ()
    tests: dict[str, str] = Field(default_factory=dict)  # feature -> test name override
    p_value_threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    correction: Literal["none", "bonferroni", "benjamini_hochberg"] = "benjamini_hochberg"
    performance_drop: Annotated[float, Field(ge=0.0)] | None = 0.05
    # the live metric is judged on the last this many labelled rows, every performance_step new ones
    performance_window_size: Annotated[int, Field(ge=30)] = 200
    performance_step: Annotated[int, Field(ge=1)] = 50
    performance_p_value: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.001  # one-sided, both samples' noise
    dedup_horizon_s: Annotated[float, Field(gt=0)] = 3600.0  # how long a request id is remembered
    num_cpus: Annotated[float, Field(gt=0.0, le=0.25)] = 0.1  # the actor's CPU reservation
    ack_timeout_s: Annotated[float, Field(gt=0)] = 30.0  # a replica's wait for the monitor's ack

    @model_validator(mode="after")
    def _check(self) -> MonitoringConfig:
        if self.min_window_size > self.window_size:
            raise _FieldProblem(
                "min_window_size",
                f"min_window_size ({self.min_window_size}) must be <= window_size ({self.window_size})",
            )
        if self.performance_step > self.performance_window_size:
            raise _FieldProblem(
                "performance_step",
                f"performance_step ({self.performance_step}) must be <= performance_window_size "
                f"({self.performance_window_size})",
            )
        return self


class RetrainingConfig(_Section):
    enabled: bool = True
    cooldown_s: Annotated[float, Field(ge=0)] = 600.0
    sweep: bool = False
    canary_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    # None: a trigger is retried until the Jobs API takes it (or the drift behind it goes away)
    submit_max_attempts: Annotated[int | None, Field(ge=1)] = None
    submit_backoff_s: Annotated[float, Field(gt=0)] = 2.0
    submit_backoff_max_s: Annotated[float, Field(gt=0)] = 30.0  # the doubling backoff stops here
    min_labelled_rows: Annotated[int, Field(ge=1)] = 100  # labelled production rows a retrain needs
    canary_duration_s: Annotated[float, Field(ge=0)] = 10.0  # the canary step before promotion


# --------------------------------------------------------------------------- root


class ProjectConfig(_Section):
    """The whole project: one YAML file."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")]
    storage: StorageConfig = StorageConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    data: DataConfig
    split: SplitConfig = SplitConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    tuning: TuningConfig = TuningConfig()
    gate: GateConfig = GateConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retraining: RetrainingConfig = RetrainingConfig()

    @model_validator(mode="after")
    def _check(self) -> ProjectConfig:
        schema = self.data.schema
        declared = set(schema.feature_names)
        for name in self.monitoring.critical_features:
            if name not in declared:
                raise _FieldProblem(
                    "monitoring.critical_features",
                    f"{name!r} is not a feature; features: {', '.join(schema.feature_names)}",
                )
        self._check_gate_metrics()
        kinds = {f.name: f.kind for f in schema.features}
        for feature, test in self.monitoring.tests.items():
            if feature not in kinds:
                raise _FieldProblem(
                    f"monitoring.tests.{feature}",
                    f"{feature!r} is not a feature; features: {', '.join(schema.feature_names)}",
                )
            allowed_tests = DRIFT_TESTS[kinds[feature]]
            if test not in allowed_tests:
                raise _FieldProblem(
                    f"monitoring.tests.{feature}",
                    f"{test!r} is not a drift test for a {kinds[feature]} feature; choose one of "
                    f"{', '.join(allowed_tests)}" + _suggest(test, allowed_tests),
                )
        for name in self.gate.slice_floors:
            if name not in schema.slice_columns:
                raise _FieldProblem(
                    "gate.slice_floors",
                    f"{name!r} is not in data.schema.slice_columns {list(schema.slice_columns)}",
                )
        if self.model.task != "regression" and schema.label.dtype in ("float64", "float32"):
            raise _FieldProblem(
                "data.schema.label.dtype",
                f"a {self.model.task} task needs an integer, string or bool label, got "
                f"{schema.label.dtype!r}; use model.task: regression for a continuous target",
            )
        return self

    def _check_gate_metrics(self) -> None:
        allowed = metrics_for(self.model.task)
        gate = self.gate
        named: list[tuple[str, str | None]] = [
            (f"gate.rules.[{i}].metric", rule.metric) for i, rule in enumerate(gate.rules or ())
        ]
        named += [
            ("gate.slice_metric", gate.slice_metric),
            ("gate.importance_metric", gate.importance_metric),
        ]
        for path, metric in named:
            if metric is not None and metric not in allowed:
                raise _FieldProblem(
                    path,
                    f"{metric!r} is not a {self.model.task} metric; choose one of {', '.join(allowed)}"
                    + _suggest(metric, allowed),
                )
        if gate.max_positive_rate_gap is not None and self.model.task != "binary":
            raise _FieldProblem(
                "gate.max_positive_rate_gap",
                "the positive-prediction rate exists for model.task: binary only; use max_fairness_gap",
            )
        for i, rule in enumerate(gate.rules or ()):
            limits = (rule.threshold, rule.min_absolute_change, rule.min_relative_change, rule.max_regression)
            if all(limit is None for limit in limits):
                raise _FieldProblem(
                    f"gate.rules.[{i}]",
                    f"the rule on {rule.metric!r} sets no limit; give threshold, min_absolute_change, "
                    "min_relative_change or max_regression",
                )

    @property
    def gate_rules(self) -> tuple[MetricRule, ...]:
        """The gate's rules, with the task's default when none are configured."""
        if self.gate.rules is not None:
            return self.gate.rules
        if self.model.task == "regression":
            return (MetricRule(metric="r2", threshold=0.0, max_regression=0.01),)
        return (MetricRule(metric="roc_auc", threshold=0.6, max_regression=0.01),)

    @property
    def slice_metric(self) -> str:
        return self.gate.slice_metric or ("rmse" if self.model.task == "regression" else "accuracy")

    @property
    def importance_metric(self) -> str:
        return self.gate.importance_metric or ("rmse" if self.model.task == "regression" else "log_loss")

    # Resolved locations. Environment variables win over the file so that the
    # same config runs on a laptop and in a cluster job unchanged.
    @property
    def home_uri(self) -> str:
        """The storage home (``RAYMLOPS_HOME`` wins over the file), normalised: an absolute path or a URI.

        Raises:
            StorageError: ``RAYMLOPS_HOME`` holds a scheme no library here can open.
        """
        try:
            return normalise_home(os.environ.get(ENV_HOME) or self.storage.home)
        except ValueError as e:  # only the environment can bring one here: the config's own value was checked
            from raymlops.errors import StorageError

            raise StorageError(f"{ENV_HOME}: {e}") from None

    @property
    def locations(self) -> StorageLocations:
        """Every artifact's location, derived from the home in one place (``raymlops.contracts``)."""
        return StorageLocations(self.home_uri, self.name, self.data.table, self.data.table_uri)

    @property
    def home_path(self) -> Path:
        """This node's folder for the home: the home itself when local, else node-local scratch."""
        return self.locations.scratch_path

    @property
    def table_uri(self) -> str:
        return self.locations.table_uri

    @property
    def quarantine_uri(self) -> str:
        return self.locations.quarantine_uri

    @property
    def inference_log_uri(self) -> str:
        """Delta table of every prediction the endpoint made (the monitor reads it)."""
        return self.locations.inference_log_uri

    @property
    def journal_dir(self) -> Path:
        """The replicas' write-ahead journals of the inference and feedback logs (node-local)."""
        return self.locations.journal_path

    @property
    def feedback_uri(self) -> str:
        """Delta table of ground-truth labels sent to ``POST /feedback``."""
        return self.locations.feedback_uri

    def with_resolved_home(self) -> ProjectConfig:
        """This config with its storage home normalised (an absolute path or a URI).

        For another process (an actor, a Ray job) whose working directory and
        environment may differ: it must find the same tables and MLflow store.
        """
        storage = self.storage.model_copy(
            update={"home": self.home_uri, "mlflow_tracking_uri": self.mlflow_tracking_uri}
        )
        return self.model_copy(update={"storage": storage})

    @property
    def monitor_actor_name(self) -> str:
        """The detached ``DriftMonitor`` actor's name (in ``runtime.namespace``)."""
        return f"raymlops-monitor-{self.name}"

    @property
    def mlflow_tracking_uri(self) -> str:
        """The tracking server, or SQLite under a local home.

        Raises:
            ConfigError: the home (perhaps from ``RAYMLOPS_HOME``) is remote and tracking is local.
        """
        home = self.home_uri
        problem = tracking_problem(home, self.storage.mlflow_tracking_uri)
        if problem:
            raise ConfigError([("storage.mlflow_tracking_uri", problem)])
        return self.storage.mlflow_tracking_uri or f"sqlite:///{Path(home) / 'mlflow.db'}"

    @property
    def mlflow_artifact_uri(self) -> str | None:
        """Where a new experiment keeps its artifacts; None lets the tracking server choose.

        With SQLite the client writes artifacts itself, so they go under the home;
        with a server they go to ``storage.mlflow_artifact_uri`` or the server's
        ``--artifacts-destination`` / ``--default-artifact-root``, never to a
        driver-local folder another node could not read.
        """
        if self.storage.mlflow_artifact_uri:
            return self.storage.mlflow_artifact_uri
        if self.mlflow_tracking_uri.startswith("sqlite:"):
            return self.locations.mlflow_artifacts_uri
        return None

    @property
    def ray_address(self) -> str | None:
        return (
            os.environ.get(ENV_JOB_RAY_ADDRESS) or os.environ.get(ENV_RAY_ADDRESS) or self.storage.ray_address
        )


# --------------------------------------------------------------------------- loading


def parse_config(raw: Any, source: str | None = None) -> ProjectConfig:
    """Validate an already-parsed mapping (e.g. from YAML or a test).

    Raises:
        ConfigError: listing every problem with its dotted path, value and what is allowed.
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            [("", f"the top level must be a mapping of keys to values, got {type(raw).__name__}")], source
        )
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_problems(e, raw), source) from None


def load_config(path: str | os.PathLike[str]) -> ProjectConfig:
    """Read and validate one YAML config file, a local path or a URI under the storage home.

    A retrain job reads the config its monitor left under an object-store
    home (``<home>/monitor/<name>/config.json``), on whichever node it runs.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or has a bad key or value.
    """
    import yaml

    source = str(path)
    try:
        if is_remote(source):
            from raymlops._internal.files import read_text

            remote = read_text(source)
            if remote is None:
                raise FileNotFoundError(source)
            text = remote
        else:
            text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError([("", f"file not found: {source}; pass --config PATH")], source) from None
    except OSError as e:  # StorageError too: an unreachable store
        raise ConfigError([("", f"cannot read {source}: {e.strerror or e}")], source) from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            [("", f"not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); save it as UTF-8")],
            source,
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([("", f"not valid YAML{where}: {problem}")], source) from None
    return parse_config(raw, source)


def _problems(error: ValidationError, raw: Any) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors(include_url=False):
        parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in item["loc"]]
        # Union members show up in loc (e.g. 'int', "literal['auto']"); keep the real keys only.
        loc = [p for p in parts if p.isidentifier() or p.startswith("[")]
        if item["type"] == "extra_forbidden" and parts and loc[-1:] != parts[-1:]:
            loc.append(parts[-1])  # an unknown key is named as written, identifier or not (e.g. ':')
        inner = item.get("ctx", {}).get("error")
        if isinstance(inner, _FieldProblem):
            loc = loc + inner.field.split(".")
            problems.append((_dotted(loc), _with_value(str(inner), raw, loc)))
            continue
        path = _dotted(loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            problems.append((path, _unknown_key_message(loc)))
        elif kind == "missing":
            keys = _allowed_keys(loc)
            expects = f" (a mapping with keys: {', '.join(sorted(keys))})" if keys else ""
            problems.append((path, f"required key is missing{expects}"))
        else:
            problems.append((path, f"got {item.get('input')!r}; {_reason(item)}"))
    return _merge_union_branches(problems)


def _merge_union_branches(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A value that fails every branch of ``int | 'auto'`` yields one error per branch; join them."""
    merged: dict[str, str] = {}
    for path, msg in problems:
        if path in merged and msg.startswith("got ") and merged[path].startswith("got "):
            merged[path] += " or " + msg.split("; ", 1)[1]
        else:
            merged[path] = msg if path not in merged else merged[path] + "; " + msg
    return list(merged.items())


def _dotted(loc: list[str]) -> str:
    out = ""
    for part in loc:
        out += part if part.startswith("[") or not out else f".{part}"
    return out


def _reason(item: Any) -> str:
    msg: str = item["msg"]
    msg = msg.replace("Input should be", "must be").replace("Value error, ", "")
    return msg


def _with_value(message: str, raw: Any, loc: list[str]) -> str:
    value = _lookup(raw, loc)
    if value is _MISSING or isinstance(value, (dict, list)):
        return message
    return f"got {value!r}; {message}"


_MISSING = object()


def _lookup(raw: Any, loc: list[str]) -> Any:
    node = raw
    for part in loc:
        if part.startswith("[") and isinstance(node, list):
            idx = int(part[1:-1])
            node = node[idx] if idx < len(node) else _MISSING
        elif isinstance(node, dict):
            node = node.get("schema" if part == "schema_" else part, _MISSING)
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _suggest(value: str, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key_message(loc: list[str]) -> str:
    allowed = _allowed_keys(loc[:-1])
    key = loc[-1]
    hint = _suggest(key, allowed)
    return f"unknown key {key!r}{hint}; allowed keys here: {', '.join(sorted(allowed))}"


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = ProjectConfig
    for part in loc:
        if part.startswith("["):
            continue
        field = model.model_fields.get(part) or model.model_fields.get(f"{part}_")
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> Any:
    """Find the pydantic model class inside an annotation like ``tuple[FeatureSpec, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    for meta in getattr(annotation, "__metadata__", ()) or ():
        found = _model_in(meta)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_in(origin) if origin is not None and origin is not annotation else None
