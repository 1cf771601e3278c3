"""The config's sections other than the schema and the root, each validated on its own."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from raymlops.config._base import FieldProblem, Section
from raymlops.config._schema import SchemaConfig
from raymlops.contracts import is_remote, normalise_home, scheme_of


class StorageConfig(Section):
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
            raise FieldProblem("home", str(e)) from None
        problem = tracking_problem(home, self.mlflow_tracking_uri)
        if problem:
            raise FieldProblem("mlflow_tracking_uri", problem)
        artifacts = self.mlflow_artifact_uri
        if artifacts is not None and not is_remote(artifacts) and is_remote(home):
            raise FieldProblem(
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


class RuntimeConfig(Section):
    """How the embedded local Ray head is started (ignored when attaching to a cluster)."""

    num_cpus: Annotated[int, Field(ge=1, le=1024)] = 4
    dashboard_host: str = "127.0.0.1"
    dashboard_port: Annotated[int, Field(ge=1, le=65535)] = 8265
    metrics_export_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    object_store_memory_mb: Annotated[int, Field(ge=75)] | None = None
    namespace: Annotated[str, Field(min_length=1)] = "raymlops"


class DataConfig(Section):
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


class SplitConfig(Section):
    train_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.7
    validation_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.15
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    seed: int = 42

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        total = self.train_fraction + self.validation_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise FieldProblem(
                "test_fraction",
                f"train_fraction + validation_fraction + test_fraction must be 1.0, got {total:g}",
            )
        return self


class PreprocessingConfig(Section):
    numeric_scaler: Literal["standard", "minmax", "none"] = "standard"
    numeric_imputer: Literal["mean", "median", "none"] = "mean"
    categorical_encoder: Literal["onehot"] = "onehot"
    profile_num_bins: Annotated[int, Field(ge=2, le=1000)] = 10
    profile_sample_size: Annotated[int, Field(ge=0, le=1_000_000)] = 5000


class ModelConfig(Section):
    task: Literal["binary", "multiclass", "regression"] = "binary"
    hidden_sizes: tuple[Annotated[int, Field(ge=1)], ...] = (64, 32)
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    factory: Annotated[str, Field(pattern=r"^[\w.]+:\w+$")] | None = None


class TrainingConfig(Section):
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


class SearchDimension(Section):
    """One tuned hyperparameter: sampled (uniform, loguniform, choice, randint) or every value (grid)."""

    type: Literal["uniform", "loguniform", "choice", "randint", "grid"]
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchDimension:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise FieldProblem("values", f"a {self.type!r} dimension needs a non-empty 'values' list")
            return self
        if self.low is None or self.high is None:
            raise FieldProblem("low", f"a {self.type!r} dimension needs both 'low' and 'high'")
        if self.low >= self.high:
            raise FieldProblem("high", f"high ({self.high}) must be > low ({self.low})")
        if self.type == "loguniform" and self.low <= 0:
            raise FieldProblem("low", f"loguniform needs low > 0, got {self.low}")
        return self


TUNABLE = ("learning_rate", "weight_decay", "batch_size", "dropout", "hidden_sizes", "epochs")


class TuningConfig(Section):
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
                raise FieldProblem("search_space", f"cannot tune {key!r}; tunable keys: {', '.join(TUNABLE)}")
        return self


CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "log_loss", "calibration_error")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "calibration_error", "rmse", "mae"})


DRIFT_TESTS = {"numeric": ("psi", "ks", "wasserstein"), "categorical": ("chi2", "jensen_shannon")}


def metrics_for(task: str) -> tuple[str, ...]:
    """The holdout metrics raymlops computes for a ``model.task``."""
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


class MetricRule(Section):
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


class GateConfig(Section):
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


class ServingConfig(Section):
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
            raise FieldProblem(
                "min_replicas",
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})",
            )
        if not self.route_prefix.startswith("/"):
            raise FieldProblem("route_prefix", f"must start with '/', got {self.route_prefix!r}")
        return self


class MonitoringConfig(Section):
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
            raise FieldProblem(
                "min_window_size",
                f"min_window_size ({self.min_window_size}) must be <= window_size ({self.window_size})",
            )
        if self.performance_step > self.performance_window_size:
            raise FieldProblem(
                "performance_step",
                f"performance_step ({self.performance_step}) must be <= performance_window_size "
                f"({self.performance_window_size})",
            )
        return self


class RetrainingConfig(Section):
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


class CanaryConfig(Section):
    """How a challenger on canary traffic is judged against the champion before it is promoted.

    The challenger answers ``steps[i]`` of the requests at each step; the
    champion also predicts those requests (its answers are only logged), so
    both versions are compared on the same live rows. A step ends with a
    verdict once each version answered ``min_requests`` and ``min_duration_s``
    passed; ``max_duration_s`` without enough traffic ends the canary as
    ``inconclusive``, never as a promotion.
    """

    enabled: bool = True
    # shares of requests the challenger answers, one step after the other; the last passed step promotes
    # empty only through the older ``retraining.canary_duration_s: 0`` (then ``enabled`` is false)
    steps: tuple[Annotated[float, Field(gt=0.0, le=1.0)], ...] = (0.1,)
    min_requests: Annotated[int, Field(ge=1)] = 100  # per version and step, before a verdict
    min_duration_s: Annotated[float, Field(ge=0)] = 0.0
    max_duration_s: Annotated[float, Field(gt=0)] = 300.0  # per step; then: inconclusive
    check_interval_s: Annotated[float, Field(gt=0)] = 1.0
    # the rules; each compares the challenger with the champion on the same window
    max_error_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01  # challenger's failures per request
    max_latency_ratio: Annotated[float, Field(ge=1.0)] = 3.0  # challenger p95 / champion p95
    # A retrain after drift is expected to answer differently: these two are reported on every
    # verdict and judged only when set (e.g. a challenger trained on the same data as the champion).
    max_prediction_shift: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # Jensen-Shannon distance
    min_agreement: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # classification: same answers
    max_accuracy_drop: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05  # with >= min_labelled labels each
    min_labelled: Annotated[int, Field(ge=1)] = 50

    @model_validator(mode="after")
    def _check(self) -> CanaryConfig:
        if self.min_duration_s > self.max_duration_s:
            raise FieldProblem(
                "min_duration_s",
                f"min_duration_s ({self.min_duration_s:g}) must be <= "
                f"max_duration_s ({self.max_duration_s:g})",
            )
        if self.enabled and not self.steps:
            raise FieldProblem("steps", "an enabled canary needs at least one step, e.g. [0.1]")
        if list(self.steps) != sorted(set(self.steps)):
            raise FieldProblem("steps", f"steps must rise strictly, e.g. [0.1, 0.5]; got {list(self.steps)}")
        return self
