"""The nodes of the attached Ray cluster, and running one small task on each.

A folder is only a storage home when every node sees the same files: on two
machines without a shared volume each node writes its own parts and the Delta
log on the head lists files no one else can read. ``check_home_shared`` proves
it the only way that holds on any file system: the driver writes a marker and a
task pinned to every other node looks for it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raymlops.errors import StorageError

__all__ = ["NodeInfo", "alive_nodes", "check_home_shared", "on_each_node"]

PROBE_TIMEOUT_S = 120.0  # a node must start a worker process (~5 s idle, much more under load)


class NodeInfo(dict[str, Any]):
    """One alive node as ``ray.nodes()`` describes it, with short accessors."""

    @property
    def node_id(self) -> str:
        return str(self["NodeID"])

    @property
    def address(self) -> str:
        return str(self.get("NodeManagerAddress", "?"))

    @property
    def label(self) -> str:
        """What a person reads: the address and a short id (two nodes of one machine share an address)."""
        return f"{self.address} ({self.node_id[:8]})"


def alive_nodes() -> list[NodeInfo]:
    """The alive nodes of the Ray cluster this process is attached to, the driver's node first."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    nodes = [NodeInfo(n) for n in ray.nodes() if n.get("Alive")]
    return sorted(nodes, key=lambda n: n.node_id != here)


def on_each_node(
    fn: Callable[..., Any],
    *args: Any,
    nodes: list[NodeInfo] | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> list[tuple[NodeInfo, Any]]:
    """Run ``fn(*args)`` once on each node (pinned, no CPU asked); its result or the exception, per node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = nodes if nodes is not None else alive_nodes()
    task = ray.remote(num_cpus=0, max_retries=0)(fn)
    refs = [
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)).remote(*args)
        for n in nodes
    ]
    results: list[tuple[NodeInfo, Any]] = []
    for node, ref in zip(nodes, refs, strict=True):
        try:
            results.append((node, ray.get(ref, timeout=timeout_s)))
        except Exception as e:  # a node that died or timed out is a result too
            ray.cancel(ref, force=True)
            results.append((node, e))
    return results


def _sees(path: str) -> bool:
    return os.path.exists(path)


def check_home_shared(home_path: Path) -> None:
    """Refuse a local-folder home that some node of a multi-node cluster does not share.

    Called before anything is written: on one node (a laptop, the embedded head)
    it costs nothing; on several it runs one tiny task per other node.

    Raises:
        StorageError: naming storage.home, the nodes that do not see it, and the fix.
    """
    nodes = alive_nodes()
    if len(nodes) < 2:
        return
    marker = home_path / ".raymlops-shared" / uuid.uuid4().hex
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("raymlops: is this folder shared by every node?")
    except OSError as e:
        raise StorageError(f"cannot write under the storage home {home_path}: {e}") from e
    try:
        blind = [
            (node, seen)
            for node, seen in on_each_node(_sees, str(marker), nodes=nodes[1:])
            if seen is not True
        ]
    finally:
        marker.unlink(missing_ok=True)
        _remove_if_empty(marker.parent)
    if blind:
        names = ", ".join(
            n.label + (f" (probe failed: {seen})" if isinstance(seen, Exception) else "") for n, seen in blind
        )
        raise StorageError(
            f"storage.home {home_path} is a folder on this machine only: {len(blind)} of the cluster's "
            f"{len(nodes)} nodes do not see it ({names}). Files written there by tasks on other nodes would "
            "be lost. Set storage.home (or RAYMLOPS_HOME) to an object-store URI such as s3://BUCKET/PREFIX "
            "with an MLflow server as storage.mlflow_tracking_uri, or to a volume every node mounts"
        )


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
