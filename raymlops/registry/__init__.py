"""MLflow's model registry, addressed by ``NAME``, ``NAME/VERSION`` or ``NAME@ALIAS``.

``Registry(config)`` is the project's registry client: ``register`` turns a
``TrainResult`` into an MLflow pyfunc model version that holds the whole bundle
(preprocessor, weights, schema, reference profile, metrics), so
``mlflow.pyfunc.load_model("models:/<name>@champion")`` predicts in any Python
process, with or without Ray running. Every version carries its lineage as
tags: run → data version → code commit → config hash.

Aliases: ``champion`` is what serves, ``previous`` the champion before it,
``challenger`` a candidate. ``champion`` moves only through ``promote`` (which
requires a passed, current gate report, or ``force`` with a reason) and
``rollback``; every alias move is appended to an audit history, a Delta table
at ``<home>/registry/alias_history``, so "what served at time T" has an answer.

The module-level functions are the same operations for one-off calls; code
that reads the registry repeatedly holds a ``Registry``.

Example:
    >>> reg = Registry(cfg)  # doctest: +SKIP
    >>> mv = reg.register(result)  # doctest: +SKIP
    >>> reg.set_alias("challenger", mv.version)  # doctest: +SKIP
    >>> reg.lineage(f"{cfg.name}@challenger").data_digest  # doctest: +SKIP
    >>> promote(cfg, f"{cfg.name}/{mv.version}", reason="beats v1 on AUC")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig
from raymlops.registry._client import Registry
from raymlops.registry._lock import ALIAS_LOCK_LEASE_S, ALIAS_LOCK_WAIT_S, alias_lock
from raymlops.registry._types import (
    CHALLENGER,
    CHAMPION,
    ENV_ACTOR,
    PREVIOUS,
    PROTECTED_ALIASES,
    TAG_CANARY_WEIGHT,
    TAG_GATE_CHAMPION,
    TAG_GATE_DATA,
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

__all__ = [
    "ALIAS_LOCK_LEASE_S",
    "ALIAS_LOCK_WAIT_S",
    "CHALLENGER",
    "CHAMPION",
    "ENV_ACTOR",
    "PREVIOUS",
    "PROTECTED_ALIASES",
    "TAG_CANARY_WEIGHT",
    "TAG_GATE_CHAMPION",
    "TAG_GATE_DATA",
    "TAG_GATE_FAILURES",
    "TAG_GATE_PASSED",
    "TAG_GATE_REPORT_ID",
    "TAG_SHADOW",
    "AliasMove",
    "Lineage",
    "ModelVersion",
    "Registry",
    "Rollout",
    "alias_lock",
    "champion",
    "champion_at",
    "check_reason",
    "history",
    "holdout_metric",
    "lineage",
    "list_versions",
    "load",
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


def register(
    result: TrainResult, config: ProjectConfig, *, progress: Callable[[str], None] | None = None
) -> ModelVersion:
    """Log the bundle of ``result`` as a pyfunc model in its run and register a new version."""
    return Registry(config).register(result, progress=progress)


def resolve(config: ProjectConfig, ref: str) -> ModelVersion:
    """The registered version a reference points to (``NAME`` alone: the newest)."""
    return Registry(config).resolve(ref)


def list_versions(config: ProjectConfig, name: str | None = None) -> list[ModelVersion]:
    """Every version of a model, oldest first (empty when the model does not exist)."""
    return Registry(config).versions(name)


def set_alias(
    config: ProjectConfig,
    alias: str,
    version: int,
    name: str | None = None,
    *,
    reason: str = "",
    actor: str | None = None,
) -> ModelVersion:
    """Point an alias other than ``champion``/``previous`` at ``version`` (see ``Registry.set_alias``)."""
    return Registry(config).set_alias(alias, version, name, reason=reason, actor=actor)


def champion(config: ProjectConfig, name: str | None = None) -> ModelVersion | None:
    """The version the ``champion`` alias points to, or None before the first promotion."""
    return Registry(config).champion(name)


def promote(
    config: ProjectConfig, ref: str, *, reason: str, force: bool = False, actor: str | None = None
) -> tuple[AliasMove, ...]:
    """Make a version the champion (see ``Registry.promote``)."""
    return Registry(config).promote(ref, reason=reason, force=force, actor=actor)


def rollback(
    config: ProjectConfig, name: str | None = None, *, reason: str, actor: str | None = None
) -> tuple[AliasMove, ...]:
    """Make the ``previous`` version champion again (see ``Registry.rollback``)."""
    return Registry(config).rollback(name, reason=reason, actor=actor)


def history(config: ProjectConfig, name: str | None = None) -> list[AliasMove]:
    """Every alias move of a model, oldest first (empty when nothing moved yet)."""
    return Registry(config).history(name)


def champion_at(config: ProjectConfig, when: dt.datetime, name: str | None = None) -> int | None:
    """The champion version at time ``when`` (naive times are taken as UTC), from the history."""
    return Registry(config).champion_at(when, name)


def rollout(config: ProjectConfig, name: str | None = None) -> Rollout:
    """The current rollout of a model (see ``Registry.rollout``)."""
    return Registry(config).rollout(name)


def set_rollout(
    config: ProjectConfig,
    ref: str | None,
    *,
    canary_weight: float = 0.0,
    shadow: bool = False,
    reason: str = "",
    actor: str | None = None,
    name: str | None = None,
    action: str | None = None,
) -> Rollout:
    """Give a challenger a canary share or a shadow copy of traffic, or end both (see ``Registry``)."""
    return Registry(config).set_rollout(
        ref, canary_weight=canary_weight, shadow=shadow, reason=reason, actor=actor, name=name, action=action
    )


def model_uri(config: ProjectConfig, ref: str) -> str:
    """A ``models:/`` URI for ``mlflow.pyfunc.load_model`` (an alias stays an alias)."""
    return Registry(config).model_uri(ref)


def load(config: ProjectConfig, ref: str) -> Any:
    """The MLflow pyfunc model for ``NAME``, ``NAME/VERSION`` or ``NAME@ALIAS``."""
    return Registry(config).load(ref)


def load_predictor(config: ProjectConfig, ref: str) -> Predictor:
    """Download a version's bundle and build its ``Predictor`` (what serving uses)."""
    return Registry(config).load_predictor(ref)


def load_profile(config: ProjectConfig, ref: str) -> ReferenceProfile:
    """A version's reference profile (the drift monitor's baseline), without loading its weights."""
    return Registry(config).load_profile(ref)


def holdout_metric(config: ProjectConfig, ref: str, metric: str) -> float | None:
    """The latest ``holdout_<metric>`` the gate logged on a version's run; None when never gated."""
    return Registry(config).holdout_metric(ref, metric)


def lineage(config: ProjectConfig, ref: str) -> Lineage:
    """Model version → run → data version → code commit → config."""
    return Registry(config).lineage(ref)
