"""``ProjectConfig``: the whole file, the checks across sections, and the locations derived from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from raymlops.config._base import (
    ENV_HOME,
    ENV_JOB_RAY_ADDRESS,
    ENV_RAY_ADDRESS,
    FieldProblem,
    Section,
    suggest,
)
from raymlops.config._sections import (
    DRIFT_TESTS,
    CanaryConfig,
    DataConfig,
    GateConfig,
    MetricRule,
    ModelConfig,
    MonitoringConfig,
    PreprocessingConfig,
    RetrainingConfig,
    RuntimeConfig,
    ServingConfig,
    SplitConfig,
    StorageConfig,
    TrainingConfig,
    TuningConfig,
    metrics_for,
    tracking_problem,
)
from raymlops.contracts import StorageLocations, normalise_home
from raymlops.errors import ConfigError


class ProjectConfig(Section):
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
    canary: CanaryConfig = CanaryConfig()

    @model_validator(mode="before")
    @classmethod
    def _older_canary_keys(cls, raw: Any) -> Any:
        """``retraining.canary_weight`` and ``canary_duration_s`` (configs written before the judged
        canary) become the canary's first step and minimum duration where the ``canary`` section
        does not set them; ``canary_duration_s: 0`` still means no canary. Folded into the section
        here, so a config dumped and read again (a retrain job's) keeps the same canary."""
        if not isinstance(raw, dict) or not isinstance(raw.get("retraining"), dict):
            return raw
        older = raw["retraining"]
        canary = raw.get("canary")
        if canary is None:
            canary = {}
        if not isinstance(canary, dict):
            return raw  # not a mapping: the section's own validation names the problem
        canary = dict(canary)
        if "steps" not in canary and isinstance(older.get("canary_weight"), (int, float)):
            weight = float(older["canary_weight"])
            canary["steps"] = [weight] if weight > 0 else []
        if "steps" not in canary and older.get("canary_duration_s") == 0:
            canary["steps"] = []  # a canary of no duration: promoted right after the gate, as before
        if "min_duration_s" not in canary and isinstance(older.get("canary_duration_s"), (int, float)):
            duration = float(older["canary_duration_s"])
            longest = canary.get("max_duration_s", CanaryConfig.model_fields["max_duration_s"].default)
            canary["min_duration_s"] = min(duration, float(longest))
        if canary.get("steps") == [] and "enabled" not in (raw.get("canary") or {}):
            canary["enabled"] = False
        return {**raw, "canary": canary} if canary else raw

    @model_validator(mode="after")
    def _check(self) -> ProjectConfig:
        schema = self.data.schema
        declared = set(schema.feature_names)
        for name in self.monitoring.critical_features:
            if name not in declared:
                raise FieldProblem(
                    "monitoring.critical_features",
                    f"{name!r} is not a feature; features: {', '.join(schema.feature_names)}",
                )
        self._check_gate_metrics()
        kinds = {f.name: f.kind for f in schema.features}
        for feature, test in self.monitoring.tests.items():
            if feature not in kinds:
                raise FieldProblem(
                    f"monitoring.tests.{feature}",
                    f"{feature!r} is not a feature; features: {', '.join(schema.feature_names)}",
                )
            allowed_tests = DRIFT_TESTS[kinds[feature]]
            if test not in allowed_tests:
                raise FieldProblem(
                    f"monitoring.tests.{feature}",
                    f"{test!r} is not a drift test for a {kinds[feature]} feature; choose one of "
                    f"{', '.join(allowed_tests)}" + suggest(test, allowed_tests),
                )
        for name in self.gate.slice_floors:
            if name not in schema.slice_columns:
                raise FieldProblem(
                    "gate.slice_floors",
                    f"{name!r} is not in data.schema.slice_columns {list(schema.slice_columns)}",
                )
        if self.model.task != "regression" and schema.label.dtype in ("float64", "float32"):
            raise FieldProblem(
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
                raise FieldProblem(
                    path,
                    f"{metric!r} is not a {self.model.task} metric; choose one of {', '.join(allowed)}"
                    + suggest(metric, allowed),
                )
        if gate.max_positive_rate_gap is not None and self.model.task != "binary":
            raise FieldProblem(
                "gate.max_positive_rate_gap",
                "the positive-prediction rate exists for model.task: binary only; use max_fairness_gap",
            )
        for i, rule in enumerate(gate.rules or ()):
            limits = (rule.threshold, rule.min_absolute_change, rule.min_relative_change, rule.max_regression)
            if all(limit is None for limit in limits):
                raise FieldProblem(
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
