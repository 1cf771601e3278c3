"""``Registry``: the one object that talks to MLflow's model registry for a project.

Built once per process from the config (``Registry(config)`` re-uses the
process's ``MlflowClient`` for that store), then held by whoever reads the
registry repeatedly: the serving replicas' watcher, the monitor, the pipeline.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig
from raymlops.errors import ConfigError, PromotionError, RegistryUnavailableError, VersionNotFoundError
from raymlops.registry._history import AliasHistory, Moves
from raymlops.registry._lock import alias_lock
from raymlops.registry._types import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    PROTECTED_ALIASES,
    TAG_CANARY_WEIGHT,
    TAG_GATE_CHAMPION,
    TAG_GATE_FAILURES,
    TAG_GATE_PASSED,
    TAG_GATE_REPORT_ID,
    TAG_SHADOW,
    AliasMove,
    Lineage,
    ModelVersion,
    Rollout,
    check_reason,
    parse_ref,
)

if TYPE_CHECKING:
    from raymlops.bundle import Predictor
    from raymlops.data import ReferenceProfile
    from raymlops.train import TrainResult


class Registry:
    """Model versions, aliases, their audit history and the rollout of one project.

    Every method that takes a ``name`` defaults it to the project's model.
    """

    def __init__(self, config: ProjectConfig) -> None:
        from raymlops import runtime

        self._config = config
        self._client = runtime.mlflow_client(config)
        self._history = AliasHistory(config)

    @property
    def config(self) -> ProjectConfig:
        return self._config

    @property
    def tracking_uri(self) -> str:
        return str(self._client.tracking_uri)

    # ------------------------------------------------------------------ versions

    def register(self, result: TrainResult, *, progress: Callable[[str], None] | None = None) -> ModelVersion:
        """Log the bundle of ``result`` as a pyfunc model in its run and register a new version."""
        from raymlops.registry._publish import publish

        version = publish(self._client, self._config, result)
        name = self._config.name
        (progress or (lambda _m: None))(f"registered {name} version {version} (models:/{name}/{version})")
        return ModelVersion.from_mlflow(self._client.get_model_version(name, str(version)))

    def resolve(self, ref: str) -> ModelVersion:
        """The registered version a reference points to (``NAME`` alone: the newest).

        Raises:
            VersionNotFoundError: no such model, version or alias, naming what exists.
        """
        from mlflow.exceptions import MlflowException

        name, version, alias = parse_ref(ref)
        try:
            if alias:
                return ModelVersion.from_mlflow(self._client.get_model_version_by_alias(name, alias))
            if version is not None:
                return ModelVersion.from_mlflow(self._client.get_model_version(name, str(version)))
        except MlflowException as e:
            known = self.versions(name)
            if not known:
                raise VersionNotFoundError(
                    f"no registered model named {name!r}; train one with `raymlops train`"
                ) from e
            aliases = sorted({a for v in known for a in v.aliases})
            raise VersionNotFoundError(
                f"{ref!r} does not exist; versions: {', '.join(str(v.version) for v in known)}; "
                f"aliases: {', '.join(aliases) or 'none'}"
            ) from e
        known = self.versions(name)
        if not known:
            raise VersionNotFoundError(f"no registered model named {name!r}; train one with `raymlops train`")
        return known[-1]

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version of a model, oldest first (empty when the model does not exist)."""
        from mlflow.exceptions import MlflowException

        name = name or self._config.name
        found = self._client.search_model_versions(f"name = '{name}'")
        if not found:
            return []
        try:  # search results leave aliases empty on some stores; the registered model has them all
            alias_map = dict(self._client.get_registered_model(name).aliases or {})
        except MlflowException:
            alias_map = {}
        versions = []
        for v in found:
            mv = ModelVersion.from_mlflow(v)
            aliases = {a for a, target in alias_map.items() if str(target) == str(mv.version)} | set(
                mv.aliases
            )
            versions.append(dataclasses.replace(mv, aliases=tuple(sorted(aliases))))
        return sorted(versions, key=lambda v: v.version)

    def tag_version(self, mv: ModelVersion, tags: dict[str, str]) -> None:
        """Set tags on a model version (the gate's verdict, for ``promote`` to read)."""
        for key, text in tags.items():
            self._client.set_model_version_tag(mv.name, str(mv.version), key, text)

    def lineage(self, ref: str) -> Lineage:
        """Model version → run → data version → code commit → config."""
        mv = self.resolve(ref)
        run = self._client.get_run(mv.run_id)
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

    def holdout_metric(self, ref: str, metric: str) -> float | None:
        """The latest ``holdout_<metric>`` the gate logged on a version's run; None when never gated."""
        mv = self.resolve(ref)
        value = self._client.get_run(mv.run_id).data.metrics.get(f"holdout_{metric}")
        return float(value) if value is not None else None

    # ------------------------------------------------------------------ loading

    def model_uri(self, ref: str) -> str:
        """A ``models:/`` URI for ``mlflow.pyfunc.load_model`` (an alias stays an alias)."""
        name, version, alias = parse_ref(ref)
        if alias:
            return f"models:/{name}@{alias}"
        return self.resolve(ref).uri if version is None else f"models:/{name}/{version}"

    def load(self, ref: str) -> Any:
        """The MLflow pyfunc model for ``NAME``, ``NAME/VERSION`` or ``NAME@ALIAS``."""
        import mlflow

        return mlflow.pyfunc.load_model(self.model_uri(ref))

    def load_predictor(self, ref: str) -> Predictor:
        """Download a version's bundle and build its ``Predictor`` (what serving uses)."""
        import mlflow

        from raymlops.bundle import Predictor

        mv = self.resolve(ref)
        return Predictor.from_folder(mlflow.artifacts.download_artifacts(f"{mv.uri}/artifacts/bundle"))

    def load_profile(self, ref: str) -> ReferenceProfile:
        """A version's reference profile (the drift monitor's baseline), without loading its weights."""
        import mlflow

        from raymlops.bundle import PROFILE_FILE
        from raymlops.data import ReferenceProfile

        mv = self.resolve(ref)
        path = mlflow.artifacts.download_artifacts(f"{mv.uri}/artifacts/bundle/{PROFILE_FILE}")
        return ReferenceProfile.from_json(Path(path).read_text())

    # ------------------------------------------------------------------ aliases

    def alias_version(self, alias: str, name: str | None = None) -> int | None:
        """The version an alias points to; None when it points nowhere."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self._client.get_model_version_by_alias(name or self._config.name, alias).version)
        except MlflowException:
            return None

    def champion(self, name: str | None = None) -> ModelVersion | None:
        """The version the ``champion`` alias points to, or None before the first promotion."""
        name = name or self._config.name
        version = self.alias_version(CHAMPION, name)
        return None if version is None else self.resolve(f"{name}/{version}")

    def set_alias(
        self, alias: str, version: int, name: str | None = None, *, reason: str = "", actor: str | None = None
    ) -> ModelVersion:
        """Point an alias other than ``champion``/``previous`` at ``version`` (recorded in the history).

        Raises:
            PromotionError: the alias is ``champion`` or ``previous``; use ``promote`` or ``rollback``.
        """
        name = name or self._config.name
        if alias in PROTECTED_ALIASES:
            raise PromotionError(
                f"the {alias!r} alias moves only through the gate: use `raymlops promote {name}/{version} "
                f"--reason ...` or `raymlops rollback {name} --reason ...`"
            )
        self.resolve(f"{name}/{version}")  # a clear error for a version that does not exist
        with alias_lock(self._config, name):
            before = self.alias_version(alias, name)
            if before != version:
                self._move(name, [(alias, before, version)], "set", reason or "set", actor)
        return self.resolve(f"{name}@{alias}")

    def promote(
        self, ref: str, *, reason: str, force: bool = False, actor: str | None = None
    ) -> tuple[AliasMove, ...]:
        """Make a version the champion; the champion before it becomes ``previous``.

        Without ``force`` the version needs a gate report that passed and that
        compared it with the current champion (``evaluate.gate`` writes one).
        ``force`` skips that check and is recorded as ``force-promote``.

        Raises:
            ConfigError: ``reason`` is empty.
            PromotionError: no gate report, a failed or stale one, or the version is already champion.
        """
        reason = check_reason(reason, "promote")
        mv = self.resolve(ref)
        name, version = mv.name, mv.version
        with alias_lock(self._config, name):  # read, check and move as one step against concurrent moves
            current = self.alias_version(CHAMPION, name)
            if current == version:
                raise PromotionError(f"{name} version {version} is already the champion; nothing to promote")
            if not force:
                _require_gate(mv, current)
            moves: Moves = [(CHAMPION, current, version)]
            if current is not None:
                moves.append((PREVIOUS, self.alias_version(PREVIOUS, name), current))
            if self.alias_version(CHALLENGER, name) == version:
                moves.append((CHALLENGER, version, None))
            action = "force-promote" if force else "promote"
            report_id = None if force else mv.tags.get(TAG_GATE_REPORT_ID)
            return self._move(name, moves, action, reason, actor, report_id=report_id, forced=force)

    def rollback(
        self, name: str | None = None, *, reason: str, actor: str | None = None
    ) -> tuple[AliasMove, ...]:
        """Make the ``previous`` version champion again.

        ``previous`` then points at the champion that version replaced when it was
        promoted (from the history), so rolling back twice walks further back
        instead of returning to the bad model.

        Raises:
            ConfigError: ``reason`` is empty.
            PromotionError: there is no ``previous`` version to restore.
        """
        name = name or self._config.name
        reason = check_reason(reason, "rollback")
        with alias_lock(self._config, name):
            current = self.alias_version(CHAMPION, name)
            restored = self.alias_version(PREVIOUS, name)
            if restored is None:
                first = (
                    f" (version {current} is the first champion)"
                    if current is not None
                    else " (no champion yet)"
                )
                raise PromotionError(f"{name} has no previous champion to roll back to{first}")
            moves: Moves = [
                (CHAMPION, current, restored),
                (PREVIOUS, restored, self._history.previous_of(name, restored)),
            ]
            return self._move(name, moves, "rollback", reason, actor)

    def history(self, name: str | None = None) -> list[AliasMove]:
        """Every alias move of a model, oldest first (empty when nothing moved yet)."""
        return self._history.moves(name or self._config.name)

    def champion_at(self, when: dt.datetime, name: str | None = None) -> int | None:
        """The champion version at time ``when`` (naive times are taken as UTC), from the history."""
        return self._history.champion_at(name or self._config.name, when)

    # ------------------------------------------------------------------ rollout

    def rollout(self, name: str | None = None) -> Rollout:
        """The current rollout of a model (no champion yet: ``champion_version`` is None).

        Raises:
            RegistryUnavailableError: the registry did not answer. Only a model that
                does not exist means "no champion"; a server that is down must not
                make the endpoint drop the models it serves.
        """
        from mlflow.exceptions import MlflowException

        from raymlops._internal.tracking import redacted

        name = name or self._config.name
        try:
            model = self._client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":  # no model yet: no champion
                return Rollout(name, None, None, 0.0, False)
            raise RegistryUnavailableError(
                f"the registry at {redacted(self.tracking_uri)} did not answer for {name}: {e}"
            ) from e
        except (OSError, ConnectionError) as e:  # requests' errors, a refused socket
            raise RegistryUnavailableError(
                f"the registry at {redacted(self.tracking_uri)} did not answer for {name}: {e}"
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
        self,
        ref: str | None,
        *,
        canary_weight: float = 0.0,
        shadow: bool = False,
        reason: str = "",
        actor: str | None = None,
        name: str | None = None,
        action: str | None = None,
    ) -> Rollout:
        """Give a challenger a share of live traffic (canary), a copy of it (shadow), or end both.

        ``ref`` None removes the challenger. The serving replicas pick the change
        up within ``serving.watch_interval_s`` without a restart. ``action`` names
        the history row of an ending (default ``end-rollout``; a judged canary
        writes ``canary-rolled_back`` or ``canary-inconclusive``).

        Raises:
            ConfigError: a weight outside [0, 1], or canary and shadow at once.
            PromotionError: ``ref`` is the champion.
        """
        if not 0.0 <= canary_weight <= 1.0:
            raise ConfigError(f"canary weight must be between 0 and 1, got {canary_weight}")
        if shadow and canary_weight > 0:
            raise ConfigError("a challenger is either a canary (a share of traffic) or a shadow, not both")
        target = self.resolve(ref) if ref is not None else None
        name = target.name if target is not None else (name or self._config.name)
        with alias_lock(self._config, name):
            before = self.alias_version(CHALLENGER, name)
            if target is None:
                canary_weight, shadow = 0.0, False
                if before is not None:
                    ended = action or "end-rollout"
                    self._move(name, [(CHALLENGER, before, None)], ended, reason or "rollout ended", actor)
            else:
                if self.alias_version(CHAMPION, name) == target.version:
                    raise PromotionError(
                        f"{name} version {target.version} is the champion; "
                        "a challenger must be another version"
                    )
                action = "shadow" if shadow else "canary"
                detail = reason or ("shadow traffic" if shadow else f"canary at weight {canary_weight}")
                self._move(name, [(CHALLENGER, before, target.version)], action, detail, actor)
            self._client.set_registered_model_tag(name, TAG_CANARY_WEIGHT, repr(float(canary_weight)))
            self._client.set_registered_model_tag(name, TAG_SHADOW, "true" if shadow else "false")
        return self.rollout(name)

    # ------------------------------------------------------------------ internals

    def _move(
        self,
        name: str,
        moves: Moves,
        action: str,
        reason: str,
        actor: str | None,
        *,
        report_id: str | None = None,
        forced: bool = False,
    ) -> tuple[AliasMove, ...]:
        """Move the aliases, then record the moves; if recording fails, put the aliases back."""
        done: Moves = []
        try:
            for alias, before, after in moves:
                self._point(name, alias, after)
                done.append((alias, before, after))
            return self._history.append(
                name, moves, action=action, reason=reason, who=actor, report_id=report_id, forced=forced
            )
        except BaseException:
            for alias, before, _ in reversed(done):
                self._point(name, alias, before)
            raise

    def _point(self, name: str, alias: str, version: int | None) -> None:
        if version is None:
            if self.alias_version(alias, name) is not None:
                self._client.delete_registered_model_alias(name, alias)
        else:
            self._client.set_registered_model_alias(name, alias, str(version))


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
