"""What the registry hands out: frozen records, the alias names, the tags it reads and writes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import os
import re
import socket
from typing import Any

from raymlops.errors import ConfigError

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
LINEAGE_TAGS = (
    "data.table_uri",
    "data.version",
    "data.digest",
    "raymlops.config_hash",
    "mlflow.source.git.commit",
    "raymlops.train_run_name",
)

_REF = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_\-]*)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z][\w\-]*))?$")


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

    @classmethod
    def from_mlflow(cls, v: Any) -> ModelVersion:
        return cls(
            name=v.name,
            version=int(v.version),
            run_id=v.run_id,
            aliases=tuple(sorted(getattr(v, "aliases", []) or [])),
            created_at_ms=int(v.creation_timestamp or 0),
            tags=dict(v.tags or {}),
        )


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


@dataclasses.dataclass(frozen=True)
class AliasMove:
    """One row of the audit history: an alias moved from one version to another."""

    ts: dt.datetime  # UTC
    model: str
    alias: str
    from_version: int | None
    to_version: int | None  # None: the alias was removed
    action: str  # promote | force-promote | rollback | set | canary | shadow | end-rollout
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


def check_reason(reason: str, what: str) -> str:
    """The reason stripped; a ``ConfigError`` when there is none (every alias move needs one)."""
    reason = (reason or "").strip()
    if not reason:
        raise ConfigError(f'a {what} needs a reason (--reason "..."); it is kept in the alias history')
    return reason


def actor() -> str:
    """Who moves an alias: RAYMLOPS_ACTOR, else user@host."""
    if os.environ.get(ENV_ACTOR):
        return os.environ[ENV_ACTOR]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
