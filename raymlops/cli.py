"""The ``raymlops`` command line: parsing and printing only, one function call per command.

Heavy modules (Ray, MLflow, torch) are imported inside the handlers so that
``raymlops --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.errors import RayMLOpsError

if TYPE_CHECKING:
    from raymlops.config import ProjectConfig

ENV_CONFIG = "RAYMLOPS_CONFIG"
DEFAULT_CONFIG = "raymlops.yaml"
EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raymlops`` command; returns the exit code."""
    parser = _parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # `raymlops submit JOB [options] -- ARGS`: what follows `--` belongs to the job, not to us
    passed: list[str] = []
    if "--" in words and words[:1] == ["submit"]:
        cut = words.index("--")
        words, passed = words[:cut], words[cut + 1 :]
    args = parser.parse_args(words)
    if passed:
        args.job_args = passed
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        result: int = args.handler(args)
        return result
    except RayMLOpsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raymlops",
        description=(
            "The ML lifecycle on Ray: versioned, validated data (Delta Lake), distributed "
            "training, a model registry with a validation gate, serving, drift monitoring "
            "and retraining. Runs on an embedded local Ray, or on a cluster when RAY_ADDRESS is set."
        ),
        epilog=(
            f"Every command reads one YAML config: --config PATH, else ${ENV_CONFIG}, else "
            f"./{DEFAULT_CONFIG}. Start with `raymlops demo`."
        ),
    )
    from raymlops import __version__

    parser.add_argument("--version", action="version", version=f"raymlops {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the closed-loop demo on an embedded local Ray",
        description=(
            "Generate demo churn data and run every stage that exists on an embedded local Ray: "
            "ingest and validate (a Delta version), quarantine bad rows, prepare splits, "
            "preprocessors and the reference profile. Prints a summary at the end. Exits 0 only "
            "when every step happened."
        ),
    )
    _add_config(demo, default_help="the packaged demo config")
    demo.add_argument("--rows", type=int, default=5000, help="rows of demo data to generate (default 5000)")
    demo.set_defaults(handler=_cmd_demo)

    data = sub.add_parser("data", help="ingest, list and inspect data versions", description="Data versions.")
    data_sub = data.add_subparsers(title="data commands", metavar="COMMAND")
    data.set_defaults(handler=lambda _a: _usage(data))

    ingest = data_sub.add_parser(
        "ingest",
        help="validate a CSV/Parquet/Delta source and commit it as a new data version",
        description=(
            "Read SOURCE with Ray Data, check it against data.schema (columns, dtypes, ranges, "
            "allowed categories, nulls, duplicate ids) and append the valid rows to the Delta "
            "table as one new version. With --on-invalid fail (the default) a single bad row "
            "stops the ingest and nothing is written; with quarantine the bad rows go to "
            "<table>_quarantine with their reasons."
        ),
    )
    ingest.add_argument("source", help="CSV or Parquet file or folder, or a Delta table")
    _add_config(ingest)
    ingest.add_argument("--mode", choices=("append", "overwrite"), help="default: data.mode")
    ingest.add_argument("--on-invalid", choices=("fail", "quarantine"), help="default: data.on_invalid")
    ingest.set_defaults(handler=_cmd_data_ingest)

    versions = data_sub.add_parser(
        "versions", help="list the data versions of the table", description="List every data version."
    )
    _add_config(versions)
    versions.set_defaults(handler=_cmd_data_versions)

    show = data_sub.add_parser(
        "show",
        help="show one data version: digest, counts, source, schema and sample rows",
        description="Show one data version (use 'latest' for the newest).",
    )
    show.add_argument("version", help="version number or 'latest'")
    _add_config(show)
    show.add_argument("--rows", type=int, default=5, help="sample rows to print (default 5)")
    show.set_defaults(handler=_cmd_data_show)

    profile = data_sub.add_parser(
        "profile",
        help="split a version and print the reference profile of its training split",
        description=(
            "Prepare a data version (deterministic split, preprocessors fitted on the training "
            "split) and print the reference profile that drift monitoring compares against."
        ),
    )
    profile.add_argument("version", nargs="?", default="latest", help="version number or 'latest' (default)")
    _add_config(profile)
    profile.add_argument("--json", action="store_true", help="print the profile as JSON")
    profile.set_defaults(handler=_cmd_data_profile)

    generate = data_sub.add_parser(
        "generate",
        help="write demo churn data (optionally shifted) to a CSV or Parquet file",
        description="Write the built-in demo dataset, e.g. to try ingest or to simulate drift.",
    )
    generate.add_argument("output", help="file to write (.csv or .parquet)")
    generate.add_argument("--rows", type=int, default=5000)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="FEATURE=STDS",
        help="shift a numeric feature by STDS standard deviations (repeatable)",
    )
    generate.add_argument(
        "--concept-shift", type=float, default=0.0, help="0..1: change the label relationship"
    )
    generate.set_defaults(handler=_cmd_data_generate)

    train = sub.add_parser(
        "train",
        help="train on a data version with Ray Train and register the model in MLflow",
        description=(
            "Prepare a data version (default: the latest), train the configured model with a Ray "
            "Train TorchTrainer (training.num_workers workers, a checkpoint every epoch, resuming "
            "after worker failures), track the run in MLflow and register the model bundle "
            "(preprocessor, weights, schema, reference profile) as a new model version."
        ),
    )
    _add_config(train)
    train.add_argument("--data-version", default="latest", help="data version number or 'latest' (default)")
    train.set_defaults(handler=_cmd_train)

    tune = sub.add_parser(
        "tune",
        help="sweep hyperparameters with Ray Tune + ASHA and register the best trial",
        description=(
            "Run tuning.num_samples trials over tuning.search_space (uniform, loguniform, choice, "
            "randint), each a full Ray Train run and an MLflow child run of the sweep's parent run. "
            "ASHA stops trials that fall behind after tuning.grace_period epochs; at most "
            "tuning.max_concurrent_trials run at once and tuning.time_budget_s bounds the sweep. "
            "The best finished trial is registered as a new model version."
        ),
    )
    _add_config(tune)
    tune.add_argument("--data-version", default="latest", help="data version number or 'latest' (default)")
    tune.set_defaults(handler=_cmd_tune)

    models = sub.add_parser(
        "models",
        help="list registered model versions and show their lineage",
        description="The MLflow model registry.",
    )
    models_sub = models.add_subparsers(title="models commands", metavar="COMMAND")
    models.set_defaults(handler=lambda _a: _usage(models))
    models_list = models_sub.add_parser(
        "list",
        help="list the versions of a model",
        description="List every version of a model with its aliases and metrics.",
    )
    models_list.add_argument("name", nargs="?", help="model name (default: the config's name)")
    _add_config(models_list)
    models_list.set_defaults(handler=_cmd_models_list)
    models_show = models_sub.add_parser(
        "show",
        help="show one version's lineage: run, data version, code commit, config",
        description="Show NAME, NAME/VERSION or NAME@ALIAS: run, data version, commit, config hash, metrics.",
    )
    models_show.add_argument("ref", help="NAME (newest), NAME/VERSION or NAME@ALIAS")
    _add_config(models_show)
    models_show.set_defaults(handler=_cmd_models_show)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a model version on the holdout and run the validation gate against the champion",
        description=(
            "Score NAME/VERSION and the current champion on the same holdout rows (the test split of "
            "the latest data version, or --data-version): task metrics, metrics per slice "
            "(data.schema.slice_columns), permutation feature importance and fairness gaps "
            "(data.schema.sensitive_columns). Then apply the gate rules of the config's gate section "
            "and print the report. The report is logged to the version's MLflow run (gate/<id>.json "
            "and .md). Exit status: 0 when the gate passes, 1 when it rejects the version."
        ),
    )
    evaluate.add_argument("ref", help="NAME/VERSION, NAME@ALIAS or NAME (newest version)")
    _add_config(evaluate)
    evaluate.add_argument("--data-version", default="latest", help="data version whose holdout to use")
    evaluate.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    evaluate.set_defaults(handler=_cmd_evaluate)

    promote = sub.add_parser(
        "promote",
        help="make a version the champion if it passes the gate (audited)",
        description=(
            "Run the gate on NAME/VERSION against the current champion; if it passes, point the "
            "'champion' alias at it and 'previous' at the old champion, and append both moves to the "
            "alias history with your reason. A rejected version leaves every alias where it is "
            "(exit 1). --force skips the gate and is recorded as a forced promotion."
        ),
    )
    promote.add_argument("ref", help="NAME/VERSION or NAME@ALIAS (e.g. churn@challenger)")
    promote.add_argument("--reason", required=True, help="why (kept in the alias history)")
    promote.add_argument("--force", action="store_true", help="promote without the gate (recorded as forced)")
    _add_config(promote)
    promote.add_argument("--data-version", default="latest", help="data version whose holdout the gate uses")
    promote.set_defaults(handler=_cmd_promote)

    rollback = sub.add_parser(
        "rollback",
        help="restore the previous champion (audited)",
        description=(
            "Point 'champion' back at the 'previous' version. 'previous' then moves to the champion "
            "before that one, so a second rollback goes further back. Recorded in the alias history."
        ),
    )
    rollback.add_argument("name", nargs="?", help="model name (default: the config's name)")
    rollback.add_argument("--reason", required=True, help="why (kept in the alias history)")
    _add_config(rollback)
    rollback.set_defaults(handler=_cmd_rollback)

    history = sub.add_parser(
        "history",
        help="show every alias move of a model, or which version was champion at a time",
        description=(
            "The append-only alias history (a Delta table under the storage home): time, action, "
            "alias, from and to version, actor, reason and gate report. With --at TIME, print the "
            "version that was champion at that time (ISO 8601; UTC unless it has an offset)."
        ),
    )
    history.add_argument("name", nargs="?", help="model name (default: the config's name)")
    history.add_argument("--at", metavar="TIME", help="e.g. 2026-11-23T14:05:00 (UTC) or ...+01:00")
    _add_config(history)
    history.set_defaults(handler=_cmd_history)

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
    _add_config(serve_cmd)
    serve_cmd.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded)")
    serve_cmd.set_defaults(handler=_cmd_serve)
    serve_sub = serve_cmd.add_subparsers(title="serve commands", metavar="COMMAND")
    serve_status = serve_sub.add_parser(
        "status",
        help="show what the running endpoint serves and its health",
        description="Ask the running endpoint (GET /model, /healthz): versions, canary or shadow, batching.",
    )
    _add_config(serve_status)
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
    _add_config(serve_build)
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
            "endpoint follows within serving.watch_interval_s; the move is in the alias history."
        ),
    )
    canary.add_argument("ref", help="NAME/VERSION (with --end: NAME)")
    canary.add_argument("--weight", type=float, default=0.1, help="share of requests, 0..1 (default 0.1)")
    canary.add_argument("--end", action="store_true", help="stop the canary (all traffic to the champion)")
    canary.add_argument("--reason", default="", help="kept in the alias history")
    _add_config(canary)
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
    _add_config(shadow)
    shadow.set_defaults(handler=_cmd_shadow)
    retrain = sub.add_parser(
        "retrain",
        help="retrain on production labels, gate, and roll out on a pass (what the monitor submits)",
        description=(
            "Join the feedback labels to the logged predictions, append them to the training table "
            "as a new data version, train (a sweep when retraining.sweep), run the gate against the "
            "champion and, on a pass, give the new version a canary (retraining.canary_weight for "
            "retraining.canary_duration_s) before promoting it. Skipped with fewer than "
            "retraining.min_labelled_rows labelled rows. The drift monitor submits this as a Ray job."
        ),
    )
    _add_config(retrain)
    retrain.add_argument(
        "--submission-id", help="the monitor's job id: the outcome is written where the monitor reads it"
    )
    retrain.add_argument(
        "--labels-after-us", type=int, help="use labels sent after this time (µs since the epoch)"
    )
    retrain.set_defaults(handler=_cmd_retrain)

    submit = sub.add_parser(
        "submit",
        help="run a jobs/ entrypoint as a Ray job on a cluster and follow its log",
        description=(
            "Submit `python jobs/JOB.py --config CONFIG [ARGS]` through the Ray Jobs API at --address "
            "(default: RAY_ADDRESS, else http://127.0.0.1:8265) with this folder as the working "
            "directory (the storage home, .git and caches excluded), print the job's log as it grows "
            "and exit 0 when the job succeeds, 1 when it fails or is stopped. Extra arguments after "
            "`--` go to the job, e.g. `raymlops submit pipeline -- --sweep`."
        ),
    )
    from raymlops._internal.submit import JOBS

    submit.add_argument("job", choices=JOBS)
    submit.add_argument("--address", help="the Ray dashboard / Jobs API URL")
    _add_config(submit)
    submit.set_defaults(job_args=[])  # the words after `--` (main() splits them off)
    submit.set_defaults(handler=_cmd_submit)

    monitor_cmd = sub.add_parser(
        "monitor",
        help="drift monitoring: report, status, start, stop",
        description=(
            "The DriftMonitor actor judges windows of live traffic against the champion's training "
            "profile and submits retrain jobs. `raymlops serve` starts it; these commands inspect it."
        ),
    )
    monitor_cmd.set_defaults(handler=lambda _a: _usage(monitor_cmd))
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
    _add_config(monitor_report)
    monitor_report.set_defaults(handler=_cmd_monitor_report)
    monitor_status = monitor_sub.add_parser(
        "status",
        help="windows, last verdicts, cooldown and retrain jobs",
        description="Read the monitor's persisted state: counters, the last windows, cooldown and jobs.",
    )
    monitor_status.add_argument("name", nargs="?", help="model name (default: the config's name)")
    monitor_status.add_argument("--windows", type=int, default=5, help="last windows to list (default 5)")
    _add_config(monitor_status)
    monitor_status.set_defaults(handler=_cmd_monitor_status)
    monitor_start = monitor_sub.add_parser(
        "start",
        help="start the monitor actor on a cluster (detached)",
        description="Start the detached DriftMonitor actor on the cluster at --address / RAY_ADDRESS.",
    )
    monitor_start.add_argument("--address", help=_ADDRESS_HELP)
    _add_config(monitor_start)
    monitor_start.set_defaults(handler=_cmd_monitor_start)
    monitor_stop = monitor_sub.add_parser(
        "stop",
        help="stop the monitor actor for good",
        description="Kill the DriftMonitor actor without restart (its state stays on disk).",
    )
    monitor_stop.add_argument("--address", help=_ADDRESS_HELP)
    _add_config(monitor_stop)
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
    monitor_retrain.add_argument("--address", help=_ADDRESS_HELP)
    _add_config(monitor_retrain)
    monitor_retrain.set_defaults(handler=_cmd_monitor_retrain)

    cluster_cmd = sub.add_parser(
        "cluster",
        help="preflight checks of a Ray cluster for raymlops",
        description="Checks a platform engineer runs after `ray up` or a KubeRay deploy.",
    )
    cluster_cmd.set_defaults(handler=lambda _a: _usage(cluster_cmd))
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
    _add_config(cluster_check)
    cluster_check.set_defaults(handler=_cmd_cluster_check)
    return parser


_ADDRESS_HELP = (
    "Ray cluster address (default: RAY_ADDRESS, else the cluster a running `raymlops serve` or "
    "`raymlops demo` of this project started, recorded under <home>/runtime/cluster.json)"
)


def _add_config(parser: argparse.ArgumentParser, default_help: str | None = None) -> None:
    default = default_help or f"${ENV_CONFIG} or ./{DEFAULT_CONFIG}"
    parser.add_argument("--config", "-c", metavar="PATH", help=f"project config YAML (default: {default})")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USER_ERROR


# --------------------------------------------------------------------------- helpers


def _config(args: argparse.Namespace, *, fallback: Path | None = None) -> ProjectConfig:
    from raymlops.config import load_config
    from raymlops.errors import ConfigError

    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        if Path(DEFAULT_CONFIG).exists():
            path = DEFAULT_CONFIG
        elif fallback is not None:
            path = str(fallback)
        else:
            raise ConfigError(
                f"no config given: pass --config PATH, set {ENV_CONFIG}, or create ./{DEFAULT_CONFIG} "
                "(configs/demo.yaml is a commented example)"
            )
    return load_config(path)


def _say(message: str) -> None:
    print(f"  {message}", flush=True)


class _Step:
    """Prints '[n] title' and the time it took; the demo's readable progress."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, title: str) -> _StepTimer:
        self.number += 1
        return _StepTimer(f"[{self.number}] {title}")


class _StepTimer:
    def __init__(self, title: str) -> None:
        self.title = title
        self.start = 0.0

    def __enter__(self) -> _StepTimer:
        self.start = time.perf_counter()
        print(self.title, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            print(f"  done in {time.perf_counter() - self.start:.1f} s", flush=True)


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _parse_version(text: str) -> int | None:
    from raymlops.errors import ConfigError

    if text == "latest":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"version must be a number or 'latest', got {text!r}") from None


def _attach(args: argparse.Namespace, config: ProjectConfig) -> None:
    """Attach the commands that talk to a running endpoint or monitor to their cluster.

    ``--address`` first, then ``RAY_ADDRESS``, then the record the embedded
    head of a running ``raymlops serve`` or ``raymlops demo`` left under the
    storage home; with none of them, an embedded head is started.
    """
    from raymlops import runtime

    address = getattr(args, "address", None) or os.environ.get("RAY_ADDRESS")
    address = address or runtime.running_cluster_address(config)
    if address:
        os.environ["RAY_ADDRESS"] = address
        if (Path.home() / ".ray" / "auth_token").exists():
            # Ray 2.60 heads require their token; Ray reads the mode once, when it is imported
            os.environ.setdefault("RAY_AUTH_MODE", "token")


def _with_runtime(config: ProjectConfig, fn: Callable[[], int]) -> int:
    from raymlops import runtime

    with runtime.session(config):
        return fn()


# --------------------------------------------------------------------------- data commands


def _cmd_data_ingest(args: argparse.Namespace) -> int:
    from raymlops import data

    config = _config(args)

    def run() -> int:
        v = data.ingest(args.source, config, mode=args.mode, on_invalid=args.on_invalid, progress=_say)
        print(_version_table([v]))
        return 0

    return _with_runtime(config, run)


def _cmd_data_versions(args: argparse.Namespace) -> int:
    from raymlops import data

    config = _config(args)
    versions = data.list_versions(config.table_uri)
    if not versions:
        print(f"no data versions in {config.table_uri}; ingest with `raymlops data ingest SOURCE`")
        return 0
    print(f"table {config.table_uri}")
    print(_version_table(versions))
    return 0


def _version_table(versions: Sequence[Any]) -> str:
    rows = [
        (
            v.version,
            v.created_at,
            v.mode,
            f"+{v.num_rows_added}",
            v.num_rows,
            v.num_rows_quarantined,
            v.short_digest,
            v.added_digest[:12],
            v.source_uri,
        )
        for v in versions
    ]
    return _table(
        rows,
        ("version", "created", "mode", "added", "rows", "quarantined", "digest", "added digest", "source"),
    )


def _cmd_data_show(args: argparse.Namespace) -> int:
    import pyarrow.parquet  # noqa: F401  (deltalake's to_pyarrow needs it loaded)
    from deltalake import DeltaTable

    from raymlops import data

    config = _config(args)
    v = data.get_version(config.table_uri, _parse_version(args.version))
    print(f"version      {v.version} of {v.table_uri}")
    print(f"created      {v.created_at} ({v.mode} from {v.source_uri})")
    print(f"rows         {v.num_rows} (+{v.num_rows_added} added, {v.num_rows_quarantined} quarantined)")
    print(f"digest       {v.digest}")
    print(f"added digest {v.added_digest}")
    print("schema")
    schema = v.schema
    rows: list[tuple[Any, ...]] = [
        (
            f.name,
            f.kind,
            f.dtype,
            "yes" if f.nullable else "no",
            _range(f.min, f.max),
            ", ".join(map(str, f.allowed)) if f.allowed else "",
        )
        for f in schema.features
    ]
    rows.append(
        (
            schema.label.name,
            "label",
            schema.label.dtype,
            "no",
            "",
            ", ".join(map(str, schema.label.classes or ())),
        )
    )
    print(_indent(_table(rows, ("column", "kind", "dtype", "nullable", "range", "allowed"))))
    if args.rows > 0:
        table = DeltaTable(v.table_uri, version=v.version).to_pyarrow_dataset().head(args.rows)
        print(f"first {table.num_rows} rows")
        print(_indent(table.to_pandas().to_string(index=False)))
    return 0


def _range(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return ""
    return f"[{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _cmd_data_profile(args: argparse.Namespace) -> int:
    from raymlops import data

    config = _config(args)
    v = data.get_version(config.table_uri, _parse_version(args.version))

    def run() -> int:
        prepared = data.prepare(v, config)
        if args.json:
            print(prepared.profile.to_json())
        else:
            print(_prepared_summary(prepared))
        return 0

    return _with_runtime(config, run)


def _prepared_summary(prepared: Any) -> str:
    v = prepared.dataset_version
    train, validation, test = prepared.split_num_rows
    lines = [
        f"version {v.version} ({v.short_digest}): train {train}, validation {validation}, test {test} rows; "
        f"{prepared.feature_dim} model inputs after preprocessing",
        "reference profile of the training split (numeric):",
    ]
    rows = [
        (
            p.name,
            p.num_nulls,
            f"{p.mean:.3g}",
            f"{p.std:.3g}",
            f"{p.min:.3g}",
            f"{p.max:.3g}",
            len(p.counts),
            " ".join(f"{e:.3g}" for e in p.bin_edges[1:-1]),
        )
        for p in prepared.profile.numeric
    ]
    lines.append(
        _indent(_table(rows, ("column", "nulls", "mean", "std", "min", "max", "bins", "inner edges")))
    )
    lines.append("reference profile of the training split (categorical):")
    categorical_rows = [
        (p.name, p.num_nulls, ", ".join(f"{k}={c}" for k, c in p.frequencies))
        for p in prepared.profile.categorical
    ]
    lines.append(_indent(_table(categorical_rows, ("column", "nulls", "frequencies"))))
    return "\n".join(lines)


def _cmd_data_generate(args: argparse.Namespace) -> int:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from raymlops import data
    from raymlops.errors import ConfigError

    shift = {}
    for item in args.shift:
        name, _, amount = item.partition("=")
        try:
            shift[name] = float(amount)
        except ValueError:
            raise ConfigError(f"--shift takes FEATURE=STDS, e.g. income_k=0.5; got {item!r}") from None
    try:
        table = data.generate_demo_data(
            args.rows, seed=args.seed, shift=shift, concept_shift=args.concept_shift
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        pq.write_table(table, out)
    else:
        pacsv.write_csv(table, out)
    print(f"wrote {table.num_rows} rows to {out}")
    return 0


# --------------------------------------------------------------------------- training and models


def _cmd_train(args: argparse.Namespace) -> int:
    return _fit_and_register(args, sweep=False)


def _cmd_tune(args: argparse.Namespace) -> int:
    return _fit_and_register(args, sweep=True)


def _fit_and_register(args: argparse.Namespace, *, sweep: bool) -> int:
    from raymlops import pipeline

    config = _config(args)
    version = _parse_version(args.data_version)
    fit = pipeline.tune_and_register if sweep else pipeline.train_and_register

    def run() -> int:
        print(fit(config, data_version=version, say=_say).render())
        return 0

    return _with_runtime(config, run)


def _cmd_models_list(args: argparse.Namespace) -> int:
    from raymlops import registry

    config = _config(args)
    name = args.name or config.name
    versions = registry.list_versions(config, name)
    if not versions:
        print(f"no registered model named {name!r}; train one with `raymlops train`")
        return 0
    rows = []
    for v in versions:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_at_ms / 1000))
        rows.append(
            (
                v.version,
                created,
                ", ".join(v.aliases),
                v.tags.get("data.version", ""),
                v.tags.get("data.digest", "")[:12],
                v.run_id,
            )
        )
    print(_table(rows, ("version", "created (UTC)", "aliases", "data version", "data digest", "run")))
    return 0


def _cmd_models_show(args: argparse.Namespace) -> int:
    from raymlops import registry

    config = _config(args)
    print(registry.lineage(config, args.ref).render())
    return 0


# --------------------------------------------------------------------------- gate commands

EXIT_REJECTED = 1


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from raymlops import evaluate

    config = _config(args)
    report = evaluate.gate(
        config, args.ref, data_version=_parse_version(args.data_version), log=not args.no_log, progress=_say
    )
    print(report.challenger.render())
    print()
    print(report.render())
    return 0 if report.passed else EXIT_REJECTED


def _cmd_promote(args: argparse.Namespace) -> int:
    from raymlops import pipeline

    config = _config(args)
    outcome = pipeline.gate_and_promote(
        config,
        args.ref,
        reason=args.reason,
        force=args.force,
        data_version=_parse_version(args.data_version),
        say=_say,
    )
    if outcome.report is not None:
        print(outcome.report.render())
    if not outcome.promoted:
        print("not promoted: the champion stays where it is", file=sys.stderr)
        return EXIT_REJECTED
    for move in outcome.moves:
        print(move.render())
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from raymlops import registry

    config = _config(args)
    for move in registry.rollback(config, args.name or config.name, reason=args.reason):
        print(move.render())
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    import datetime as dt

    from raymlops import registry
    from raymlops.errors import ConfigError

    config = _config(args)
    name = args.name or config.name
    if args.at:
        try:
            text = args.at[:-1] + "+00:00" if args.at.endswith(("Z", "z")) else args.at  # 3.10 lacks "Z"
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"--at {args.at!r} is not an ISO 8601 time, e.g. 2026-11-23T14:05:00") from None
        version = registry.champion_at(config, when, name)
        print(f"{name} champion at {args.at}: " + (f"version {version}" if version else "none"))
        return 0
    moves = registry.history(config, name)
    if not moves:
        print(f"no alias of {name!r} has moved yet; promote a version with `raymlops promote`")
    for move in moves:
        print(move.render())
    return 0


# --------------------------------------------------------------------------- serving commands


def _cmd_serve(args: argparse.Namespace) -> int:
    from raymlops import pipeline, registry, runtime

    config = _config(args)
    if args.address:
        os.environ["RAY_ADDRESS"] = args.address
    rt = runtime.start(config)
    try:
        endpoint = pipeline.deploy(config, jobs_address=rt.dashboard_url, say=_say)
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

    config = _config(args)
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

    config = _config(args)
    path_in_app = args.config_path_in_app or args.config or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG
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
    return _rollout(args, shadow=False)


def _cmd_shadow(args: argparse.Namespace) -> int:
    return _rollout(args, shadow=True)


def _rollout(args: argparse.Namespace, *, shadow: bool) -> int:
    from raymlops import registry

    config = _config(args)
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


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from raymlops import pipeline

    config = _config(args, fallback=pipeline.packaged_demo_config())
    summary = pipeline.demo(config, num_rows=args.rows, step=_Step(), say=_say)
    print()
    print(summary.render())
    return 0 if summary.ok else 1


# --------------------------------------------------------------------------- monitoring and retraining


def _cmd_retrain(args: argparse.Namespace) -> int:
    import json

    from raymlops import pipeline

    config = _config(args)
    started = time.perf_counter()

    def say(message: str) -> None:  # a job's log has no clock of its own: each step says when it ran
        print(f"  [{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    def run() -> int:
        outcome = pipeline.retrain(
            config, submission_id=args.submission_id, labels_after_us=args.labels_after_us, say=say
        )
        print(json.dumps({"ok": True, **outcome.summary()}, default=str), flush=True)
        return 0

    return _with_runtime(config, run)


def _cmd_submit(args: argparse.Namespace) -> int:
    from raymlops._internal.submit import submit_and_follow

    config = _config(args)
    path = args.config or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG
    return submit_and_follow(args.job, config, path, address=args.address, job_args=args.job_args)


def _cmd_cluster_check(args: argparse.Namespace) -> int:
    from raymlops.preflight import check_cluster

    config = _config(args)
    _attach(args, config)

    def run() -> int:
        report = check_cluster(config, timeout_s=args.timeout_s)
        print(report.render())
        return 0 if report.ok else 1

    return _with_runtime(config, run)


def _monitor_config(args: argparse.Namespace) -> ProjectConfig:
    config = _config(args)
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
    import json

    from raymlops._internal import files
    from raymlops.errors import MonitoringError
    from raymlops.monitor import DriftPolicy, MonitorState, describe_performance

    config = _monitor_config(args)
    state = MonitorState.load(config.locations.monitor_state_uri)
    if state is None:
        raise MonitoringError(
            f"no monitor state for {config.name} under {config.locations.monitor_uri}; "
            "`raymlops serve` starts the monitor (monitoring.enabled)"
        )
    retraining = config.retraining
    cooldown = "none"
    if state.last_retrain_s is not None:
        policy = DriftPolicy(
            config.monitoring.consecutive_windows, retraining.cooldown_s, state.streak, state.last_retrain_s
        )
        left = policy.cooldown_left_s(time.time())
        cooldown = f"{left:.0f} s left" if left > 0 else "over"
    print(f"model          {config.name}, champion version {state.champion_version}")
    print(f"last check     {state.last_check_at or 'never'} ({state.num_restarts} restarts)")
    print(
        f"rows           {state.next_row} logged, {state.num_duplicates} duplicates refused, "
        f"{state.next_row - state.closed_rows} in the open window (size {config.monitoring.window_size})"
    )
    print(
        f"windows        {state.num_windows} closed, {state.num_drifted_windows} drifted, "
        f"streak {state.streak} of {config.monitoring.consecutive_windows}"
    )
    print(f"last decision  {state.last_decision or '-'}")
    if state.last_performance:
        print(f"live metric    {describe_performance(state.last_performance)}")
    print(
        f"labels         {state.num_labelled} joined; the live metric is judged on the last "
        f"{config.monitoring.performance_window_size}, every {config.monitoring.performance_step} new"
    )
    print(f"cooldown       {cooldown} (retraining.cooldown_s {retraining.cooldown_s:g})")
    outcomes = ", ".join(f"{k} {v}" for k, v in state.outcomes().items())
    print(f"retrain jobs   {state.num_triggers} triggered: {outcomes}")
    for job in state.jobs[-5:]:
        status = job.outcome or job.status or job.stage
        detail = job.detail or job.reason
        if job.stage == "pending" and job.attempts:  # the Jobs API has not taken it yet
            detail = f"not submitted yet after {job.attempts} attempt(s), retrying: {job.last_error}"
        print(f"  {job.submission_id}  {job.triggered_at}  {status}  {detail}")
    windows_text = files.read_text(config.locations.windows_uri) if args.windows > 0 else None
    if windows_text:
        judged = [json.loads(line) for line in windows_text.splitlines()]
        rows = []
        for w in [w for w in judged if w.get("kind", "drift") == "drift"][-args.windows :]:
            rows.append(
                (
                    w["window"],
                    w["at"],
                    w["num_rows"],
                    f"{w['drift_share']:.2f}",
                    "DRIFTED" if w["drifted"] else "stable",
                    w["decision"],
                )
            )
        print(_table(rows, ("window", "closed at", "rows", "share", "verdict", "decision")))
    return 0


def _cmd_monitor_start(args: argparse.Namespace) -> int:
    from raymlops import monitor, runtime

    config = _config(args)
    _attach(args, config)
    rt = runtime.start(config)
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

    config = _config(args)
    _attach(args, config)

    def run() -> int:
        stopped = monitor.stop(config)
        print(f"drift monitor {config.monitor_actor_name} " + ("stopped" if stopped else "was not running"))
        return 0

    return _with_runtime(config, run)


def _cmd_monitor_retrain(args: argparse.Namespace) -> int:
    from raymlops import monitor
    from raymlops.errors import MonitoringError

    config = _config(args)
    _attach(args, config)

    def run() -> int:
        import ray

        actor = monitor.get(config)
        if actor is None:
            raise MonitoringError(
                f"no drift monitor {config.monitor_actor_name} is running; start it with "
                "`raymlops monitor start --address ...` (or `raymlops serve`)"
            )
        events = ray.get(actor.request_retrain.remote(args.reason))
        for event in events:
            print(event)
        return 1 if events and events[0].startswith("not triggered") else 0  # scripts can tell

    return _with_runtime(config, run)


if __name__ == "__main__":
    sys.exit(main())
