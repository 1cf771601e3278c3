"""``raymlops monitor``: report, status, start, stop, retrain."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from raymlops.cli._common import (
    ADDRESS_HELP,
    EXIT_REJECTED,
    add_config,
    attach,
    project_config,
    usage,
    with_runtime,
)

if TYPE_CHECKING:
    from raymlops.config import ProjectConfig


def register(sub: Any) -> None:
    monitor_cmd = sub.add_parser(
        "monitor",
        help="drift monitoring: report, status, start, stop",
        description=(
            "The DriftMonitor actor judges windows of live traffic against the champion's training "
            "profile and submits retrain jobs. `raymlops serve` starts it; these commands inspect it."
        ),
    )
    monitor_cmd.set_defaults(handler=lambda _a: usage(monitor_cmd))
    monitor_sub = monitor_cmd.add_subparsers(title="monitor commands", metavar="COMMAND")
    monitor_report = monitor_sub.add_parser(
        "report",
        help="write an HTML drift report of the newest logged rows and print its table",
        description=(
            "Test the newest --rows logged requests (default monitoring.window_size) against the "
            "champion's reference profile with the configured tests, print the per-feature table and "
            "write a self-contained HTML page with reference-vs-window histograms. Needs no Ray."
        ),
    )
    monitor_report.add_argument("name", nargs="?", help="model name (default: the config's name)")
    monitor_report.add_argument("--rows", type=int, help="rows to test (default monitoring.window_size)")
    monitor_report.add_argument("--output", "-o", help="HTML file (default <home>/monitor/NAME/report.html)")
    add_config(monitor_report)
    monitor_report.set_defaults(handler=_cmd_monitor_report)
    monitor_status = monitor_sub.add_parser(
        "status",
        help="windows, last verdicts, cooldown and retrain jobs",
        description="Read the monitor's persisted state: counters, the last windows, cooldown and jobs.",
    )
    monitor_status.add_argument("name", nargs="?", help="model name (default: the config's name)")
    monitor_status.add_argument("--windows", type=int, default=5, help="last windows to list (default 5)")
    add_config(monitor_status)
    monitor_status.set_defaults(handler=_cmd_monitor_status)
    monitor_start = monitor_sub.add_parser(
        "start",
        help="start the monitor actor on a cluster (detached)",
        description="Start the detached DriftMonitor actor on the cluster at --address / RAY_ADDRESS.",
    )
    monitor_start.add_argument("--address", help=ADDRESS_HELP)
    add_config(monitor_start)
    monitor_start.set_defaults(handler=_cmd_monitor_start)
    monitor_stop = monitor_sub.add_parser(
        "stop",
        help="stop the monitor actor for good",
        description="Kill the DriftMonitor actor without restart (its state stays on disk).",
    )
    monitor_stop.add_argument("--address", help=ADDRESS_HELP)
    add_config(monitor_stop)
    monitor_stop.set_defaults(handler=_cmd_monitor_stop)
    monitor_retrain = monitor_sub.add_parser(
        "retrain",
        help="ask the running monitor to retrain now (one job, retried with backoff)",
        description=(
            "Trigger a retrain through the running DriftMonitor actor: the trigger is saved before "
            "the job is submitted to the Jobs API, a refused submission is retried with a doubling "
            "backoff (retraining.submit_backoff_s, capped at submit_backoff_max_s) until the API takes "
            "it (or retraining.submit_max_attempts, when set), and only one retrain job runs at a "
            "time. The job attaches to this cluster, never to another Ray on the machine. "
            "`raymlops monitor status` follows the job."
        ),
    )
    monitor_retrain.add_argument("--reason", required=True, help="why (recorded with the job)")
    monitor_retrain.add_argument("--address", help=ADDRESS_HELP)
    add_config(monitor_retrain)
    monitor_retrain.set_defaults(handler=_cmd_monitor_retrain)


def _monitor_config(args: argparse.Namespace) -> ProjectConfig:
    config = project_config(args)
    name = getattr(args, "name", None)
    return config.model_copy(update={"name": name}) if name else config


def _cmd_monitor_report(args: argparse.Namespace) -> int:
    from raymlops import monitor

    config = _monitor_config(args)
    page = monitor.write_report(config, num_rows=args.rows, path=args.output)
    print(page.table)
    print(f"HTML report: {page.html_path}")
    return 0


def _cmd_monitor_status(args: argparse.Namespace) -> int:
    from raymlops import monitor

    print(monitor.status(_monitor_config(args), num_windows=args.windows).render())
    return 0


def _cmd_monitor_start(args: argparse.Namespace) -> int:
    from raymlops import monitor, runtime

    config = project_config(args)
    attach(args, config)
    rt = runtime.start(config, quiet=True)
    try:
        monitor.start(config, jobs_address=rt.dashboard_url)
        print(f"drift monitor {config.monitor_actor_name} running in namespace {config.runtime.namespace}")
        if rt.started_here:
            print("  (on an embedded Ray it stops with this command; use --address for a cluster)")
    finally:
        rt.stop()
    return 0


def _cmd_monitor_stop(args: argparse.Namespace) -> int:
    from raymlops import monitor

    config = project_config(args)
    attach(args, config)

    def run() -> int:
        stopped = monitor.stop(config)
        print(f"drift monitor {config.monitor_actor_name} " + ("stopped" if stopped else "was not running"))
        return 0

    return with_runtime(config, run)


def _cmd_monitor_retrain(args: argparse.Namespace) -> int:
    from raymlops import monitor

    config = project_config(args)
    attach(args, config)

    def run() -> int:
        answer = monitor.request_retrain(config, args.reason)
        print(answer.render())
        return 0 if answer.triggered else EXIT_REJECTED  # scripts can tell

    return with_runtime(config, run)
