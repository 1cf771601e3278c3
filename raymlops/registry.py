"""A thin facade over MLflow's model registry, addressed by ``NAME``, ``NAME/VERSION`` or ``NAME@ALIAS``.

``register`` turns a ``TrainResult`` into an MLflow pyfunc model version that
holds the whole bundle (preprocessor, weights, schema, reference profile,
metrics), so ``mlflow.pyfunc.load_model("models:/<name>@champion")`` predicts
in any Python process, with or without Ray running. Every version carries its
lineage as tags: run → data version → code commit → config hash.

Aliases: ``champion`` is what serves, ``previous`` the champion before it,
``challenger`` a candidate. ``champion`` moves only through ``promote`` (which
requires a passed, current gate report, or ``force`` with a reason) and
``rollback``; every alias move is appended to an audit history, a Delta table
at ``<home>/registry/alias_history``, so "what served at time T" has an answer.

Example:
    >>> mv = register(result, cfg)  # doctest: +SKIP
    >>> set_alias(cfg, "challenger", mv.version)  # doctest: +SKIP
    >>> lineage(cfg, f"{cfg.name}@challenger").data_digest  # doctest: +SKIP
    >>> promote(cfg, f"{cfg.name}/{mv.version}", reason="beats v1 on AUC")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import logging
import os
import re
import socket
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig
from raymlops.contracts import is_remote
from raymlops.errors import (
    ConfigError,
    PromotionError,
    RegistryUnavailableError,
    StorageError,
    VersionNotFoundError,
)

_LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    from raymlops.bundle import Predictor
    from raymlops.data import ReferenceProfile
    from raymlops.train import TrainResult

__all__ = [
    "AliasMove",
    "Lineage",
    "ModelVersion",
    "Rollout",
    "alias_lock",
    "champion",
    "champion_at",
    "check_reason",
    "history",
    "holdout_metric",
    "lineage",
    "list_versions",
    "load_predictor",
    "load_profile",
    "model_uri",
    "parse_ref",
    "promote",
    "register",
    "resolve",
    "rollback",
    "rollout",
    "set_alias",
    "set_rollout",
]

CHAMPION = "champion"
PREVIOUS = "previous"
CHALLENGER = "challenger"
PROTECTED_ALIASES = (CHAMPION, PREVIOUS)  # moved only by promote / rollback
ENV_ACTOR = "RAYMLOPS_ACTOR"
# Written by evaluate.gate on the challenger's model version, read by promote.
TAG_GATE_PASSED = "raymlops.gate.passed"
TAG_GATE_REPORT_ID = "raymlops.gate.report_id"
TAG_GATE_CHAMPION = "raymlops.gate.champion_version"
TAG_GATE_FAILURES = "raymlops.gate.failures"
TAG_GATE_DATA = "raymlops.gate.data_version"
# Registered-model tags the serving endpoint follows (with the champion and challenger aliases).
TAG_CANARY_WEIGHT = "raymlops.rollout.canary_weight"
TAG_SHADOW = "raymlops.rollout.shadow"

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
    try:
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
    except OSError as e:  # a full or read-only artifact store: no version was registered
        raise StorageError(
            f"cannot store the model's files for {config.name} under "
            f"{client.get_run(result.run_id).info.artifact_uri}: {e}. Nothing was registered; free "
            "space or fix the permissions and register again."
        ) from e
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


def set_alias(
    config: ProjectConfig,
    alias: str,
    version: int,
    name: str | None = None,
    *,
    reason: str = "",
    actor: str | None = None,
) -> ModelVersion:
    """Point an alias other than ``champion``/``previous`` at ``version`` (recorded in the history).

    Raises:
        PromotionError: the alias is ``champion`` or ``previous``; use ``promote`` or ``rollback``.
    """
    import mlflow

    from raymlops import runtime

    name = name or config.name
    if alias in PROTECTED_ALIASES:
        raise PromotionError(
            f"the {alias!r} alias moves only through the gate: use `raymlops promote {name}/{version} "
            f"--reason ...` or `raymlops rollback {name} --reason ...`"
        )
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    resolve(config, f"{name}/{version}")  # a clear error for a version that does not exist
    with alias_lock(config, name):
        before = _alias_version(client, name, alias)
        if before != version:
            _move(
                config, client, name, [(alias, before, version)], "set", reason or "set", actor, None, False
            )
    return resolve(config, f"{name}@{alias}")


# --------------------------------------------------------------------------- promotion


@dataclasses.dataclass(frozen=True)
class AliasMove:
    """One row of the audit history: an alias moved from one version to another."""

    ts: dt.datetime  # UTC
    model: str
    alias: str
    from_version: int | None
    to_version: int | None  # None: the alias was removed
    action: str  # promote | force-promote | rollback | set
    actor: str
    reason: str
    gate_report_id: str | None
    forced: bool
    operation_id: str  # moves made by one promote/rollback share it
    position: int  # order within the operation

    def render(self) -> str:
        def v(x: int | None) -> str:
            return "-" if x is None else str(x)

        gate = f" gate {self.gate_report_id}" if self.gate_report_id else ""
        return (
            f"{self.ts:%Y-%m-%d %H:%M:%S.%f} UTC  {self.action:<13} {self.alias:<10} "
            f"{v(self.from_version):>3} → {v(self.to_version):<3} by {self.actor}: {self.reason}{gate}"
        )


def champion(config: ProjectConfig, name: str | None = None) -> ModelVersion | None:
    """The version the ``champion`` alias points to, or None before the first promotion."""
    import mlflow

    from raymlops import runtime

    name = name or config.name
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    version = _alias_version(client, name, CHAMPION)
    return None if version is None else resolve(config, f"{name}/{version}")


def promote(
    config: ProjectConfig,
    ref: str,
    *,
    reason: str,
    force: bool = False,
    actor: str | None = None,
) -> tuple[AliasMove, ...]:
    """Make a version the champion; the champion before it becomes ``previous``.

    Without ``force`` the version needs a gate report that passed and that
    compared it with the current champion (``evaluate.gate`` writes one).
    ``force`` skips that check and is recorded as ``force-promote``.

    Raises:
        ConfigError: ``reason`` is empty.
        PromotionError: no gate report, a failed or stale one, or the version is already champion.
    """
    import mlflow

    from raymlops import runtime

    reason = check_reason(reason, "promote")
    mv = resolve(config, ref)
    name, version = mv.name, mv.version
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    with alias_lock(config, name):  # read, check and move as one step against concurrent promotions
        current = _alias_version(client, name, CHAMPION)
        if current == version:
            raise PromotionError(f"{name} version {version} is already the champion; nothing to promote")
        if not force:
            _require_gate(mv, current)
        moves: list[tuple[str, int | None, int | None]] = [(CHAMPION, current, version)]
        if current is not None:
            moves.append((PREVIOUS, _alias_version(client, name, PREVIOUS), current))
        if _alias_version(client, name, CHALLENGER) == version:
            moves.append((CHALLENGER, version, None))
        action = "force-promote" if force else "promote"
        report_id = None if force else mv.tags.get(TAG_GATE_REPORT_ID)
        return _move(config, client, name, moves, action, reason, actor, report_id, force)


def rollback(
    config: ProjectConfig, name: str | None = None, *, reason: str, actor: str | None = None
) -> tuple[AliasMove, ...]:
    """Make the ``previous`` version champion again.

    ``previous`` then points at the champion that version replaced when it was
    promoted (from the history), so rolling back twice walks further back
    instead of returning to the bad model.

    Raises:
        ConfigError: ``reason`` is empty.
        PromotionError: there is no ``previous`` version to restore.
    """
    import mlflow

    from raymlops import runtime

    name = name or config.name
    reason = check_reason(reason, "rollback")
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    with alias_lock(config, name):
        current = _alias_version(client, name, CHAMPION)
        restored = _alias_version(client, name, PREVIOUS)
        if restored is None:
            raise PromotionError(
                f"{name} has no previous champion to roll back to"
                + (
                    f" (version {current} is the first champion)"
                    if current is not None
                    else " (no champion yet)"
                )
            )
        moves = [(CHAMPION, current, restored), (PREVIOUS, restored, _previous_of(config, name, restored))]
        return _move(config, client, name, moves, "rollback", reason, actor, None, False)


def _previous_of(config: ProjectConfig, name: str, version: int) -> int | None:
    """What ``previous`` pointed at right after ``version`` last became champion.

    That is the champion ``version`` replaced when it was promoted, or, if it
    came back by a rollback, whatever that rollback left as ``previous``; so
    repeated rollbacks walk back through the promotions instead of swinging
    between two versions.
    """
    moves = history(config, name)
    made = [m for m in moves if m.alias == CHAMPION and m.to_version == version]
    if not made:
        return None
    operation = made[-1].operation_id
    left = [m for m in moves if m.operation_id == operation and m.alias == PREVIOUS]
    return left[-1].to_version if left else None


def history(config: ProjectConfig, name: str | None = None) -> list[AliasMove]:
    """Every alias move of a model, oldest first (empty when nothing moved yet)."""
    from deltalake import DeltaTable

    name = name or config.name
    uri = _history_uri(config)
    if not DeltaTable.is_deltatable(uri):
        return []
    table = DeltaTable(uri).to_pyarrow_table()
    rows = [r for r in table.to_pylist() if r["model"] == name]
    rows.sort(key=lambda r: (r["ts"], r["operation_id"], r["position"]))
    return [AliasMove(**r) for r in rows]


def champion_at(config: ProjectConfig, when: dt.datetime, name: str | None = None) -> int | None:
    """The champion version at time ``when`` (naive times are taken as UTC), from the history."""
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    moves = [m for m in history(config, name) if m.alias == CHAMPION and m.ts <= when]
    return moves[-1].to_version if moves else None


@dataclasses.dataclass(frozen=True)
class Rollout:
    """What the endpoint should serve: the champion, and how the challenger gets traffic.

    The registry is the single source of truth: ``promote``, ``rollback``,
    ``set_rollout`` write it and every serving replica follows it.
    """

    name: str
    champion_version: int | None
    challenger_version: int | None
    canary_weight: float  # share of requests answered by the challenger
    shadow: bool  # the challenger also predicts every request; its answers are only recorded


def rollout(config: ProjectConfig, name: str | None = None) -> Rollout:
    """The current rollout of a model (no champion yet: ``champion_version`` is None).

    Raises:
        RegistryUnavailableError: the registry did not answer. Only a model that
            does not exist means "no champion"; a server that is down must not
            make the endpoint drop the models it serves.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from raymlops import runtime
    from raymlops._internal.tracking import redacted

    name = name or config.name
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    try:
        model = client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":  # no model yet: no champion
            return Rollout(name, None, None, 0.0, False)
        raise RegistryUnavailableError(
            f"the registry at {redacted(client.tracking_uri)} did not answer for {name}: {e}"
        ) from e
    except (OSError, ConnectionError) as e:  # requests' errors, a refused socket
        raise RegistryUnavailableError(
            f"the registry at {redacted(client.tracking_uri)} did not answer for {name}: {e}"
        ) from e
    aliases = {alias: int(version) for alias, version in (model.aliases or {}).items()}
    tags = dict(model.tags or {})
    challenger = aliases.get(CHALLENGER)
    return Rollout(
        name=name,
        champion_version=aliases.get(CHAMPION),
        challenger_version=challenger,
        canary_weight=float(tags.get(TAG_CANARY_WEIGHT, 0.0)) if challenger is not None else 0.0,
        shadow=tags.get(TAG_SHADOW) == "true" and challenger is not None,
    )


def set_rollout(
    config: ProjectConfig,
    ref: str | None,
    *,
    canary_weight: float = 0.0,
    shadow: bool = False,
    reason: str = "",
    actor: str | None = None,
    name: str | None = None,
) -> Rollout:
    """Give a challenger a share of live traffic (canary), a copy of it (shadow), or end both.

    ``ref`` None removes the challenger. The serving replicas pick the change
    up within ``serving.watch_interval_s`` without a restart.

    Raises:
        ConfigError: a weight outside [0, 1], or canary and shadow at once.
        PromotionError: ``ref`` is the champion.
    """
    import mlflow

    from raymlops import runtime

    if not 0.0 <= canary_weight <= 1.0:
        raise ConfigError(f"canary weight must be between 0 and 1, got {canary_weight}")
    if shadow and canary_weight > 0:
        raise ConfigError("a challenger is either a canary (a share of traffic) or a shadow, not both")
    client = mlflow.MlflowClient(runtime.configure_mlflow(config))
    target = resolve(config, ref) if ref is not None else None
    name = target.name if target is not None else (name or config.name)
    with alias_lock(config, name):
        before = _alias_version(client, name, CHALLENGER)
        if target is None:
            canary_weight, shadow = 0.0, False
            if before is not None:
                moves: list[tuple[str, int | None, int | None]] = [(CHALLENGER, before, None)]
                _move(
                    config, client, name, moves, "end-rollout", reason or "rollout ended", actor, None, False
                )
        else:
            if _alias_version(client, name, CHAMPION) == target.version:
                raise PromotionError(
                    f"{name} version {target.version} is the champion; a challenger must be another version"
                )
            action = "shadow" if shadow else "canary"
            detail = reason or ("shadow traffic" if shadow else f"canary at weight {canary_weight}")
            _move(
                config,
                client,
                name,
                [(CHALLENGER, before, target.version)],
                action,
                detail,
                actor,
                None,
                False,
            )
        client.set_registered_model_tag(name, TAG_CANARY_WEIGHT, repr(float(canary_weight)))
        client.set_registered_model_tag(name, TAG_SHADOW, "true" if shadow else "false")
    return rollout(config, name)


def _require_gate(mv: ModelVersion, current: int | None) -> None:
    ref = f"{mv.name}/{mv.version}"
    passed = mv.tags.get(TAG_GATE_PASSED)
    if passed is None:
        raise PromotionError(
            f"{ref} has no gate report; run `raymlops evaluate {ref}` first (or promote with --force "
            "and a reason, which the history records)"
        )
    report_id = mv.tags.get(TAG_GATE_REPORT_ID, "?")
    if passed != "true":
        raise PromotionError(
            f"the gate rejected {ref} (report {report_id}): {mv.tags.get(TAG_GATE_FAILURES, '')}. "
            f"See `raymlops evaluate {ref}`; the champion stays where it is"
        )
    compared = mv.tags.get(TAG_GATE_CHAMPION, "none")
    if compared != (str(current) if current is not None else "none"):
        raise PromotionError(
            f"the gate report {report_id} of {ref} compared it with champion {compared}, but the champion is "
            f"now {current if current is not None else 'none'}; run `raymlops evaluate {ref}` again"
        )


def _move(
    config: ProjectConfig,
    client: Any,
    name: str,
    moves: list[tuple[str, int | None, int | None]],
    action: str,
    reason: str,
    actor: str | None,
    report_id: str | None,
    forced: bool,
) -> tuple[AliasMove, ...]:
    """Move the aliases, then record the moves; if recording fails, put the aliases back."""
    done: list[tuple[str, int | None, int | None]] = []
    try:
        for alias, before, after in moves:
            _point(client, name, alias, after)
            done.append((alias, before, after))
        return _record(config, name, moves, action, reason, actor, report_id, forced)
    except BaseException:
        for alias, before, _ in reversed(done):
            _point(client, name, alias, before)
        raise


def _point(client: Any, name: str, alias: str, version: int | None) -> None:
    if version is None:
        if _alias_version(client, name, alias) is not None:
            client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, str(version))


def _record(
    config: ProjectConfig,
    name: str,
    moves: list[tuple[str, int | None, int | None]],
    action: str,
    reason: str,
    actor: str | None,
    report_id: str | None,
    forced: bool,
) -> tuple[AliasMove, ...]:
    import pyarrow as pa
    from deltalake import write_deltalake

    now = dt.datetime.now(dt.UTC)
    operation = uuid.uuid4().hex
    who = actor or _actor()
    rows = tuple(
        AliasMove(now, name, alias, before, after, action, who, reason, report_id, forced, operation, i)
        for i, (alias, before, after) in enumerate(moves)
    )
    table = pa.Table.from_pylist([dataclasses.asdict(r) for r in rows], schema=_history_schema())
    uri = _history_uri(config)
    try:
        write_deltalake(uri, table, mode="append")
    except Exception as e:  # OSError, or deltalake's own errors (schema, commit conflicts)
        raise StorageError(
            f"cannot append to the alias history at {uri}: {type(e).__name__}: {e}; the aliases were put back"
        ) from e
    return rows


ALIAS_LOCK_LEASE_S = 120.0  # longer than any alias move (a few MLflow calls and one Delta append)
ALIAS_LOCK_WAIT_S = 300.0


@contextlib.contextmanager
def alias_lock(config: ProjectConfig, name: str) -> Iterator[None]:
    """An exclusive lease per model: alias moves of one model never interleave, on any node.

    The lock is a one-row Delta table under the storage home. Taking it is a
    Delta commit that overwrites the row read at version V; Delta refuses a
    second overwrite based on the same V (optimistic concurrency: an atomic
    rename on a local or mounted disk, a conditional PUT on an object store),
    so of all processes that saw the lock free exactly one wins, wherever they
    run. A holder that dies keeps the lease for ``ALIAS_LOCK_LEASE_S``, then
    the next process takes it over.

    Raises:
        PromotionError: the lock stayed held for ``ALIAS_LOCK_WAIT_S``.
        StorageError: the lock table cannot be written.
    """
    uri = config.locations.alias_lock_uri(name)
    owner = f"{_actor()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
    version = _take_lease(uri, owner)
    try:
        yield
    finally:
        _give_back_lease(uri, owner, version)


def _lease_row(owner: str, expires_s: float) -> Any:
    import pyarrow as pa

    return pa.table({"owner": [owner], "expires_s": [expires_s]})


def _take_lease(uri: str, owner: str) -> int:
    """Commit ourselves as the lock's owner; the Delta version of that commit."""
    import random
    import time

    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError, TableNotFoundError

    if not is_remote(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + ALIAS_LOCK_WAIT_S
    wait_s = 0.02
    while True:
        try:
            try:
                table = DeltaTable(uri)
            except TableNotFoundError:  # the first move of this model: create the lock free
                write_deltalake(uri, _lease_row("", 0.0), mode="overwrite")
                continue
            row = table.to_pyarrow_table().to_pylist()
            free = not row or not row[0]["owner"] or float(row[0]["expires_s"]) < time.time()
            if free:
                write_deltalake(table, _lease_row(owner, time.time() + ALIAS_LOCK_LEASE_S), mode="overwrite")
                return int(table.version()) + 1
        except CommitFailedError:
            pass  # another process committed first: read again
        except OSError as e:
            raise StorageError(f"cannot take the alias lock at {uri}: {e}") from e
        except Exception as e:  # deltalake's own errors (e.g. a creation race) are not OSErrors
            if "concurrent" not in str(e).lower() and "already exists" not in str(e).lower():
                raise StorageError(f"cannot take the alias lock at {uri}: {type(e).__name__}: {e}") from e
        if time.monotonic() > deadline:
            raise PromotionError(
                f"the alias lock {uri} stayed held for {ALIAS_LOCK_WAIT_S:.0f} s; another alias move of this "
                f"model is running (or died less than {ALIAS_LOCK_LEASE_S:.0f} s ago). Try again later"
            )
        time.sleep(wait_s * (0.5 + random.random()))
        wait_s = min(wait_s * 2, 0.5)


def _give_back_lease(uri: str, owner: str, version: int) -> None:
    """Free the lock if we still hold it (a lease that expired under us may have been taken over)."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError

    try:
        table = DeltaTable(uri)
        if int(table.version()) == version:
            write_deltalake(table, _lease_row("", 0.0), mode="overwrite")
            return
        row = table.to_pyarrow_table().to_pylist()
        if row and row[0]["owner"] == owner:
            write_deltalake(table, _lease_row("", 0.0), mode="overwrite")
    except CommitFailedError:
        _LOG.warning("the alias lock %s changed hands while held by %s; its lease had expired", uri, owner)
    except Exception as e:  # the lease then expires by itself
        _LOG.warning(
            "could not free the alias lock %s (%s); it frees itself in %.0f s", uri, e, ALIAS_LOCK_LEASE_S
        )


def _history_uri(config: ProjectConfig) -> str:
    uri = config.locations.alias_history_uri()
    if not is_remote(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    return uri


def _history_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("ts", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("alias", pa.string()),
            ("from_version", pa.int64()),
            ("to_version", pa.int64()),
            ("action", pa.string()),
            ("actor", pa.string()),
            ("reason", pa.string()),
            ("gate_report_id", pa.string()),
            ("forced", pa.bool_()),
            ("operation_id", pa.string()),
            ("position", pa.int32()),
        ]
    )


def _alias_version(client: Any, name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def check_reason(reason: str, what: str) -> str:
    """The reason stripped; a ``ConfigError`` when there is none (every alias move needs one)."""
    reason = (reason or "").strip()
    if not reason:
        raise ConfigError(f'a {what} needs a reason (--reason "..."); it is kept in the alias history')
    return reason


def _actor() -> str:
    """Who moves an alias: RAYMLOPS_ACTOR, else user@host."""
    if os.environ.get(ENV_ACTOR):
        return os.environ[ENV_ACTOR]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


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


def load_profile(config: ProjectConfig, ref: str) -> ReferenceProfile:
    """A version's reference profile (the drift monitor's baseline), without loading its weights."""
    import mlflow

    from raymlops.bundle import PROFILE_FILE
    from raymlops.data import ReferenceProfile

    mv = resolve(config, ref)
    path = mlflow.artifacts.download_artifacts(f"{mv.uri}/artifacts/bundle/{PROFILE_FILE}")
    return ReferenceProfile.from_json(Path(path).read_text())


def holdout_metric(config: ProjectConfig, ref: str, metric: str) -> float | None:
    """The latest ``holdout_<metric>`` the gate logged on a version's run; None when it was never gated."""
    import mlflow

    from raymlops import runtime

    mv = resolve(config, ref)
    run = mlflow.MlflowClient(runtime.configure_mlflow(config)).get_run(mv.run_id)
    value = run.data.metrics.get(f"holdout_{metric}")
    return float(value) if value is not None else None


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
