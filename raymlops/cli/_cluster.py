"""``raymlops cluster check``: preflight checks of a Ray cluster."""

from __future__ import annotations

import argparse
from typing import Any

from raymlops.cli._common import (
    add_config,
    attach,
    project_config,
    usage,
    with_runtime,
)


def register(sub: Any) -> None:
    cluster_cmd = sub.add_parser(
        "cluster",
        help="preflight checks of a Ray cluster for raymlops",
        description="Checks a platform engineer runs after `ray up` or a KubeRay deploy.",
    )
    cluster_cmd.set_defaults(handler=lambda _a: usage(cluster_cmd))
    cluster_sub = cluster_cmd.add_subparsers(title="cluster commands", metavar="COMMAND")
    cluster_check = cluster_sub.add_parser(
        "check",
        help="on every node: the storage home takes a write, MLflow answers, the champion loads",
        description=(
            "Run one task pinned to each alive node of the cluster at --address / RAY_ADDRESS, with that "
            "node's own environment: write, read back and delete a probe under storage.home (proving "
            "its credentials), call the MLflow server at storage.mlflow_tracking_uri, and load "
            "models:/NAME@champion when there is one. Prints one row per node; exits 0 when every node "
            "passed, 1 naming each failing node and part. A local-folder home that some node does not "
            "share is refused before any task runs (exit 2)."
        ),
    )
    cluster_check.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS)")
    cluster_check.add_argument(
        "--timeout-s",
        type=float,
        default=300.0,
        help="how long a node may take to run its check (default 300)",
    )
    add_config(cluster_check)
    cluster_check.set_defaults(handler=_cmd_cluster_check)


def _cmd_cluster_check(args: argparse.Namespace) -> int:
    from raymlops.preflight import check_cluster

    config = project_config(args)
    attach(args, config)

    def run() -> int:
        report = check_cluster(config, timeout_s=args.timeout_s)
        print(report.render())
        return 0 if report.ok else 1

    return with_runtime(config, run)
