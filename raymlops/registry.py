"""A thin facade over MLflow's model registry, addressed by ``NAME``, ``NAME/VERSION`` or ``NAME@ALIAS``.

``register`` turns a ``TrainResult`` into an MLflow pyfunc model version that
holds the whole bundle (preprocessor, weights, schema, reference profile,
metrics), so ``mlflow.pyfunc.load_model("models:/<name>@champion")`` predicts
in any Python process, with or without Ray running. Every version carries its
lineage as tags: run → data version → code commit → config hash.

Example:
    >>> mv = register(result, cfg)  # doctest: +SKIP
    >>> set_alias(cfg.name, "challenger", mv.version)  # doctest: +SKIP
    >>> lineage(cfg, f"{cfg.name}@challenger").data_digest  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig
from raymlops.errors import ConfigError, VersionNotFoundError

if TYPE_CHECKING:
    from raymlops.bundle import Predictor
    from raymlops.train import TrainResult

__all__ = [
    "Lineage",
    "ModelVersion",
    "lineage",
    "list_versions",
    "load_predictor",
    "model_uri",
    "parse_ref",
    "register",
    "resolve",
    "set_alias",
]

_REF = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_\-]*)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z][\w\-]*))?$")
_LINEAGE_TAGS = (
    "data.table_uri",
    "data.version",
    "data.digest",
    "raymlops.config_hash",
    "mlflow.source.git.commit",
    "raymlops.train_run_name",
)


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One registered model version."""

    name: str
    version: int
    run_id: str
    aliases: tuple[str, ...]
    created_at_ms: int
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclasses.dataclass(frozen=True)
class Lineage:
    """Where a model version came from, end to end."""

    model: ModelVersion
    run_status: str
    metrics: dict[str, float]
    params: dict[str, str]
    data_table_uri: str
    data_version: int
    data_digest: str
    code_commit: str | None
    config_hash: str

    def render(self) -> str:
        lines = [
            f"model       {self.model.name} version {self.model.version}"
            + (f" (aliases: {', '.join(self.model.aliases)})" if self.model.aliases else ""),
            f"run         {self.model.run_id} ({self.run_status})",
            f"data        {self.data_table_uri} version {self.data_version} (digest {self.data_digest[:12]})",
            f"code        {self.code_commit or 'unknown (not a git checkout)'}",
            f"config      hash {self.config_hash}",
            "metrics     " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(self.metrics.items())),
        ]
        keys = ("training.num_workers", "training.epochs", "training.learning_rate", "model.hidden_sizes")
        lines.append("params      " + ", ".join(f"{k}={self.params[k]}" for k in keys if k in self.params))
        return "\n".join(lines)


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``NAME`` / ``NAME/3`` / ``NAME@champion`` → (name, version, alias).

    Raises:
        ConfigError: the reference is not one of these forms.
    """
    match = _REF.match(ref)
    if not match:
        raise ConfigError(
            f"model reference {ref!r} is not NAME, NAME/VERSION or NAME@ALIAS (e.g. churn@champion)"
        )
    version = match.group("version")
    return match.group("name"), int(version) if version else None, match.group("alias")


def register(
    result: TrainResult, config: ProjectConfig, *, progress: Callable[[str], None] | None = None
) -> ModelVersion:
    """Log the bundle of ``result`` as a pyfunc model in its run and register a new version."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from raymlops import __version__, runtime
    from raymlops.bundle import Predictor, write_bundle
    from raymlops.train import load_weights

    say = progress or (lambda _m: None)
    tracking_uri = runtime.configure_mlflow(config)
    prepared = result.prepared
    model = load_weights(result)
    hp = result.hyperparameters
    spec = {
        "model_name": config.name,
        "task": config.model.task,
        "input_dim": prepared.feature_dim,
        "output_dim": result.output_dim,
        "hidden_sizes": list(hp["hidden_sizes"]),
        "dropout": hp["dropout"],
        "factory": hp["factory"],
        "label_classes": list(prepared.label_classes) if prepared.label_classes is not None else None,
        "schema": prepared.dataset_version.schema.model_dump(mode="json", by_alias=True),
        "train_run_id": result.run_id,
    }
    sample = prepared.test.take_batch(5, batch_format="pandas")
    example = pd.DataFrame(sample)[list(prepared.dataset_version.schema.feature_names)]
    client = mlflow.MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_bundle(
            Path(tmp) / "bundle",
            spec=spec,
            preprocessor=prepared.preprocessor,
            state_dict=model.state_dict(),
            profile_json=prepared.profile.to_json(),
            metrics=result.metrics,
            dataset_version_json=prepared.dataset_version.to_json(),
        )
        predictor = Predictor.from_folder(folder)
        with warnings.catch_warnings():
            # "integer columns cannot hold missing values": the bundle coerces input types itself
            warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
            signature = infer_signature(example, predictor.predict_frame(example))
        with mlflow.start_run(run_id=result.run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                # models from code: no pickled Python object inside the model
                python_model=str(Path(__file__).with_name("_pyfunc_model.py")),
                artifacts={"bundle": str(folder)},
                signature=signature,
                input_example=example,
                registered_model_name=config.name,
                pip_requirements=[
                    f"raymlops=={__version__}",
                    "ray[data]==2.60.*",
                    "torch",
                    "mlflow",
                    "pandas",
                    "pyarrow",
                ],
                await_registration_for=60,
            )
    version = int(info.registered_model_version)
    run_tags = client.get_run(result.run_id).data.tags
    tags = {key: run_tags[key] for key in _LINEAGE_TAGS if key in run_tags}
    tags["raymlops.train_run_name"] = result.run_name
    tags["raymlops.num_attempts"] = str(result.num_attempts)
    for key, value in tags.items():
        client.set_model_version_tag(config.name, str(version), key, value)
    client.update_model_version(
        config.name,
        str(version),
        description=(
            f"Trained on {prepared.dataset_version.table_uri} version {prepared.dataset_version.version}; "
            f"best val_loss {result.metrics['val_loss']:.4f}."
        ),
    )
    say(f"registered {config.name} version {version} (models:/{config.name}/{version})")
    return _model_version(client.get_model_version(config.name, str(version)))


def resolve(config: ProjectConfig, ref: str) -> ModelVersion:
    """The registered version a reference points to (``NAME`` alone: the newest).

    Raises:
        VersionNotFoundError: no such model, version or alias, naming what exists.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from raymlops import runtime

    name, version, alias = parse_ref(ref)
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    try:
        if alias:
            return _model_version(client.get_model_version_by_alias(name, alias))
        if version is not None:
            return _model_version(client.get_model_version(name, str(version)))
    except MlflowException as e:
        known = list_versions(config, name)
        if not known:
            raise VersionNotFoundError(
                f"no registered model named {name!r}; train one with `raymlops train`"
            ) from e
        aliases = sorted({a for v in known for a in v.aliases})
        raise VersionNotFoundError(
            f"{ref!r} does not exist; versions: {', '.join(str(v.version) for v in known)}; "
            f"aliases: {', '.join(aliases) or 'none'}"
        ) from e
    known = list_versions(config, name)
    if not known:
        raise VersionNotFoundError(f"no registered model named {name!r}; train one with `raymlops train`")
    return known[-1]


def list_versions(config: ProjectConfig, name: str | None = None) -> list[ModelVersion]:
    """Every version of a model, oldest first (empty when the model does not exist)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from raymlops import runtime

    name = name or config.name
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    found = client.search_model_versions(f"name = '{name}'")
    if not found:
        return []
    try:  # search results leave aliases empty on some stores; the registered model has them all
        alias_map = dict(client.get_registered_model(name).aliases or {})
    except MlflowException:
        alias_map = {}
    versions = []
    for v in found:
        mv = _model_version(v)
        aliases = {a for a, target in alias_map.items() if str(target) == str(mv.version)} | set(mv.aliases)
        versions.append(dataclasses.replace(mv, aliases=tuple(sorted(aliases))))
    return sorted(versions, key=lambda v: v.version)


def set_alias(config: ProjectConfig, alias: str, version: int, name: str | None = None) -> ModelVersion:
    """Point ``alias`` at ``version`` (audited promotion comes with the gate)."""
    import mlflow

    from raymlops import runtime

    name = name or config.name
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    resolve(config, f"{name}/{version}")  # a clear error for a version that does not exist
    client.set_registered_model_alias(name, alias, str(version))
    return resolve(config, f"{name}@{alias}")


def model_uri(config: ProjectConfig, ref: str) -> str:
    """A ``models:/`` URI for ``mlflow.pyfunc.load_model`` (an alias stays an alias)."""
    name, version, alias = parse_ref(ref)
    if alias:
        return f"models:/{name}@{alias}"
    return resolve(config, ref).uri if version is None else f"models:/{name}/{version}"


def load(config: ProjectConfig, ref: str) -> Any:
    """The MLflow pyfunc model for ``NAME``, ``NAME/VERSION`` or ``NAME@ALIAS``."""
    import mlflow

    from raymlops import runtime

    runtime.configure_mlflow(config)
    return mlflow.pyfunc.load_model(model_uri(config, ref))


def load_predictor(config: ProjectConfig, ref: str) -> Predictor:
    """Download a version's bundle and build its ``Predictor`` (what serving uses)."""
    import mlflow

    from raymlops.bundle import Predictor

    mv = resolve(config, ref)
    folder = mlflow.artifacts.download_artifacts(f"{mv.uri}/artifacts/bundle")
    return Predictor.from_folder(folder)


def lineage(config: ProjectConfig, ref: str) -> Lineage:
    """Model version → run → data version → code commit → config."""
    import mlflow

    from raymlops import runtime

    mv = resolve(config, ref)
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    run = client.get_run(mv.run_id)
    tags = {**run.data.tags, **mv.tags}
    return Lineage(
        model=mv,
        run_status=run.info.status,
        metrics={k: v for k, v in run.data.metrics.items() if k.startswith("best_")},
        params=dict(run.data.params),
        data_table_uri=tags.get("data.table_uri", ""),
        data_version=int(tags.get("data.version", -1)),
        data_digest=tags.get("data.digest", ""),
        code_commit=tags.get("mlflow.source.git.commit"),
        config_hash=tags.get("raymlops.config_hash", ""),
    )


def _model_version(v: Any) -> ModelVersion:
    return ModelVersion(
        name=v.name,
        version=int(v.version),
        run_id=v.run_id,
        aliases=tuple(sorted(getattr(v, "aliases", []) or [])),
        created_at_ms=int(v.creation_timestamp or 0),
        tags=dict(v.tags or {}),
    )
