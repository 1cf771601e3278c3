"""``raymlops cluster check``: can every node of the cluster reach what raymlops will ask of it?

Run after ``ray up`` or a KubeRay deploy, before the first job. A missing
credential, a bucket one node cannot reach, or an MLflow server behind a
network policy otherwise surfaces minutes later as a failed training worker or
a replica stuck restarting, on whichever node the scheduler happened to pick.
One task pinned to each node answers three questions there, with that node's
own environment: does the storage home take a write, read and delete; does the
MLflow server answer; does the champion (when there is one) load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from raymlops.config import ProjectConfig

__all__ = ["NodeCheck", "PreflightReport", "check_cluster"]

PARTS = ("storage", "mlflow", "champion")


@dataclasses.dataclass(frozen=True)
class NodeCheck:
    """One node's answers: part → "ok", "skipped: …" or the failure."""

    node: str
    results: tuple[tuple[str, str], ...]

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(part for part, text in self.results if text != "ok" and not text.startswith("skipped"))


@dataclasses.dataclass(frozen=True)
class PreflightReport:
    home_uri: str
    tracking_uri: str
    champion: str | None
    nodes: tuple[NodeCheck, ...]

    @property
    def ok(self) -> bool:
        return all(not n.failed for n in self.nodes)

    def render(self) -> str:
        lines = [
            f"storage.home               {self.home_uri}",
            f"storage.mlflow_tracking_uri {self.tracking_uri}",
            f"champion                   {self.champion or 'none yet (loading skipped)'}",
            "",
            f"{'node':<28} " + " ".join(f"{p:<9}" for p in PARTS),
        ]
        for node in self.nodes:
            marks = dict(node.results)
            cells = [
                "FAIL" if p in node.failed else ("-" if marks[p].startswith("skipped") else "ok")
                for p in PARTS
            ]
            lines.append(f"{node.node:<28} " + " ".join(f"{c:<9}" for c in cells))
        for node in self.nodes:
            for part in node.failed:
                lines.append(f"  {node.node} {part}: {dict(node.results)[part]}")
        lines.append(
            "all nodes passed" if self.ok else f"{sum(bool(n.failed) for n in self.nodes)} node(s) failed"
        )
        return "\n".join(lines)


def _check_here(config_json: str, champion_uri: str | None) -> list[tuple[str, str]]:
    """Runs on one node: the three checks with this node's environment (and its own clients)."""
    import os

    from raymlops._internal import files
    from raymlops.config import ProjectConfig
    from raymlops.contracts import is_remote

    config = ProjectConfig.model_validate_json(config_json)
    home, tracking_uri = config.home_uri, config.mlflow_tracking_uri

    def storage() -> None:
        if not is_remote(home) and not os.path.isdir(home):
            raise OSError(f"{home} does not exist on this node")
        files.probe(home)

    def tracking() -> None:
        import mlflow

        mlflow.MlflowClient(tracking_uri, tracking_uri).search_experiments(max_results=1)

    def champion() -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        mlflow.pyfunc.load_model(champion_uri)

    results = [("storage", _outcome(storage)), ("mlflow", _outcome(tracking))]
    results.append(("champion", "skipped: no champion" if champion_uri is None else _outcome(champion)))
    return results


def _outcome(check: Callable[[], None]) -> str:
    """ "ok", or the exception a check raised, cut to what a table row can hold."""
    try:
        check()
    except Exception as e:  # every failure is a finding for the report, never a crash of the task
        return f"{type(e).__name__}: {str(e)[:300]}"
    return "ok"


def check_cluster(config: ProjectConfig, *, timeout_s: float = 300.0) -> PreflightReport:
    """Run the checks on every alive node of the attached cluster (``runtime.start`` first).

    A node whose task cannot run (dead, no worker within ``timeout_s``) fails every part.
    """
    from raymlops import registry
    from raymlops._internal.nodes import on_each_node
    from raymlops._internal.tracking import redacted

    try:
        champion = registry.champion(config)
    except Exception:  # the MLflow check names the cause on every node
        champion = None
    champion_uri = f"models:/{config.name}@champion" if champion else None
    config_json = config.with_resolved_home().model_dump_json(by_alias=True)
    checks: list[NodeCheck] = []
    for node, result in on_each_node(_check_here, config_json, champion_uri, timeout_s=timeout_s):
        if isinstance(result, Exception):
            text = f"the check could not run on this node: {type(result).__name__}: {str(result)[:300]}"
            checks.append(NodeCheck(node.label, tuple((p, text) for p in PARTS)))
        else:
            checks.append(NodeCheck(node.label, tuple(result)))
    return PreflightReport(
        home_uri=config.home_uri,
        tracking_uri=redacted(config.mlflow_tracking_uri),
        champion=f"{config.name} version {champion.version}" if champion else None,
        nodes=tuple(checks),
    )
