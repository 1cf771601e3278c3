"""``serve`` (with ``status`` and ``build``), ``canary``, ``shadow``: the endpoint and its rollouts."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from raymlops.cli._common import (
    EXIT_REJECTED,
    add_config,
    attach,
    config_path,
    project_config,
    say,
)


def register(sub: Any) -> None:
    serve_cmd = sub.add_parser(
        "serve",
        help="serve the champion over HTTP with Ray Serve (blocks until Ctrl-C)",
        description=(
            "Deploy the model's endpoint with Ray Serve on serving.host:serving.port (127.0.0.1:8000 "
            "by default) on an embedded local Ray, or on the cluster at --address / RAY_ADDRESS, print "
            "its URL and keep it up until Ctrl-C (on a cluster it stays up after the command exits). "
            "Replicas follow the registry: promote, rollback, canary and shadow take effect within "
            "serving.watch_interval_s, without a restart. Subcommands: status, build."
        ),
    )
    add_config(serve_cmd)
    serve_cmd.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded)")
    serve_cmd.set_defaults(handler=_cmd_serve)
    serve_sub = serve_cmd.add_subparsers(title="serve commands", metavar="COMMAND")
    serve_status = serve_sub.add_parser(
        "status",
        help="show what the running endpoint serves and its health",
        description="Ask the running endpoint (GET /model, /healthz): versions, canary or shadow, batching.",
    )
    add_config(serve_status)
    serve_status.set_defaults(handler=_cmd_serve_status)
    serve_build = serve_sub.add_parser(
        "build",
        help="write a Serve config file for `serve deploy` and KubeRay's RayService",
        description=(
            "Write a Ray Serve config file (applications, import path raymlops.serve:build_app, "
            "deployment options from the serving section) that `serve deploy` and a RayService's "
            "serveConfigV2 accept."
        ),
    )
    add_config(serve_build)
    serve_build.add_argument("--output", "-o", default="serve_config.yaml", help="file to write")
    serve_build.add_argument(
        "--config-path-in-app",
        default=None,
        help="path of the project config as the Serve application sees it (default: the --config path)",
    )
    serve_build.set_defaults(handler=_cmd_serve_build)

    canary = sub.add_parser(
        "canary",
        help="send a share of live traffic to a challenger version",
        description=(
            "Make NAME/VERSION the challenger and route --weight of the requests to it (sticky per "
            "request id). Responses say which version answered. --end stops the rollout. The "
            "endpoint follows within serving.watch_interval_s; the move is in the alias history. "
            "With --judge, step through canary.steps instead, compare the challenger with the "
            "champion on the same live traffic at each step (error rate, p95 model time, prediction "
            "shift and agreement, accuracy from late labels) and promote it when every step passes, "
            "or roll it back on a broken rule or when traffic stays below canary.min_requests for "
            "canary.max_duration_s (exit 0 promoted, 1 not). The version needs a passed gate report."
        ),
    )
    canary.add_argument("ref", help="NAME/VERSION (with --end: NAME)")
    canary.add_argument("--weight", type=float, default=0.1, help="share of requests, 0..1 (default 0.1)")
    canary.add_argument("--end", action="store_true", help="stop the canary (all traffic to the champion)")
    canary.add_argument(
        "--judge",
        action="store_true",
        help="judge it step by step (canary section), then promote or roll back",
    )
    canary.add_argument("--reason", default="", help="kept in the alias history")
    add_config(canary)
    canary.set_defaults(handler=_cmd_canary)

    shadow = sub.add_parser(
        "shadow",
        help="let a challenger predict every request in the shadow of the champion",
        description=(
            "Make NAME/VERSION the challenger in shadow mode: it predicts every request too, clients "
            "get only the champion's answers, both predictions go to the inference log and the "
            "disagreement rate to Prometheus (raymlops_shadow_disagreements). --end stops it."
        ),
    )
    shadow.add_argument("ref", help="NAME/VERSION (with --end: NAME)")
    shadow.add_argument("--end", action="store_true", help="stop the shadow")
    shadow.add_argument("--reason", default="", help="kept in the alias history")
    add_config(shadow)
    shadow.set_defaults(handler=_cmd_shadow)


def _cmd_serve(args: argparse.Namespace) -> int:
    from raymlops import pipeline, registry, runtime

    config = project_config(args)
    attach(args, config, use_record=False)
    rt = runtime.start(config, quiet=True)
    try:
        endpoint = pipeline.deploy(config, jobs_address=rt.dashboard_url, say=say)
        rollout = registry.rollout(config)
        print(endpoint.render())
        if rollout.champion_version is None:
            print(f"  no champion yet: /predict answers 503 until `raymlops promote {config.name}/N`")
        else:
            print(f"  serving {config.name} version {rollout.champion_version}")
        if not rt.started_here:
            print("  the endpoint keeps running on the cluster after this command exits")
            return 0
        print("  Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)
    finally:
        rt.stop()


def _cmd_serve_status(args: argparse.Namespace) -> int:
    import requests

    from raymlops import serve

    config = project_config(args)
    url = serve.endpoint_url(config)
    try:
        model = requests.get(f"{url}/model", timeout=10).json()
        health = requests.get(f"{url}/healthz", timeout=10).json()
    except (requests.RequestException, ValueError) as e:
        print(f"no endpoint answers at {url} ({e}); start one with `raymlops serve`", file=sys.stderr)
        return 1

    def version(part: dict[str, Any] | None) -> str:
        return "-" if not part else f"version {part['version']} (data version {part['data_version']})"

    print(f"endpoint    {url}")
    print(f"champion    {version(model['champion'])}")
    print(f"challenger  {version(model['challenger'])}")
    mode = "shadow" if model["shadow"] else f"canary weight {model['canary_weight']:.2f}"
    print(f"rollout     {mode}" + (" (pinned by user_config)" if model["pinned"] else ""))
    replica = health["replica"]
    print(
        f"replica     {replica['num_batched_requests']} requests in {replica['num_batches']} batches "
        f"(largest {replica['max_batch_size_seen']})"
    )
    return 0


def _cmd_serve_build(args: argparse.Namespace) -> int:
    import yaml

    from raymlops import serve

    config = project_config(args)
    path_in_app = args.config_path_in_app or config_path(args)
    # with monitoring, the builder in raymlops.pipeline starts the drift monitor beside the endpoint
    builder = "raymlops.pipeline:build_app" if config.monitoring.enabled else "raymlops.serve:build_app"
    text = yaml.safe_dump(serve.serve_config(config, path_in_app, import_path=builder), sort_keys=False)
    Path(args.output).write_text(
        "# Ray Serve config for raymlops (`raymlops serve build`): `serve deploy` this file, or paste it\n"
        "# under a RayService's spec.serveConfigV2.\n" + text
    )
    print(f"wrote {args.output}: serve deploy {args.output}")
    return 0


def _cmd_canary(args: argparse.Namespace) -> int:
    if not args.judge:
        return _rollout(args, shadow=False)
    from raymlops import pipeline

    config = project_config(args)
    outcome = pipeline.run_canary(config, args.ref, reason=args.reason or "judged canary", say=say)
    print(f"{args.ref}: {outcome.outcome.replace('_', ' ')}: {outcome.detail}")
    return 0 if outcome.outcome == "promoted" else EXIT_REJECTED


def _cmd_shadow(args: argparse.Namespace) -> int:
    return _rollout(args, shadow=True)


def _rollout(args: argparse.Namespace, *, shadow: bool) -> int:
    from raymlops import registry

    config = project_config(args)
    if args.end:
        name = registry.parse_ref(args.ref)[0]
        rollout = registry.set_rollout(config, None, name=name, reason=args.reason)
    else:
        weight = 0.0 if shadow else args.weight
        rollout = registry.set_rollout(
            config, args.ref, canary_weight=weight, shadow=shadow, reason=args.reason
        )
    if rollout.challenger_version is None:
        print(f"{rollout.name}: no challenger; all traffic goes to version {rollout.champion_version}")
    elif rollout.shadow:
        print(
            f"{rollout.name}: version {rollout.challenger_version} shadows the champion, "
            f"version {rollout.champion_version}"
        )
    else:
        print(
            f"{rollout.name}: version {rollout.challenger_version} gets {rollout.canary_weight:.0%} of "
            f"requests, champion {rollout.champion_version} the rest"
        )
    return 0
