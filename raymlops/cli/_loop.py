"""``demo``, ``retrain``, ``submit``: the closed loop, as a demo, a retrain step and a Ray job."""

from __future__ import annotations

import argparse
import time
from typing import Any

from raymlops.cli._common import (
    Step,
    add_config,
    config_path,
    project_config,
    say,
    with_runtime,
)


def register_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the closed-loop demo on an embedded local Ray",
        description=(
            "Run the whole closed loop on generated churn data, on an embedded local Ray: ingest "
            "and validate a Delta version (bad rows quarantined), prepare splits and the reference "
            "profile, train with Ray Train and sweep with Ray Tune (tracked and registered in MLflow), "
            "gate and promote, serve the champion with Ray Serve and start the drift monitor, send "
            "stationary then drifted traffic with late labels until the monitor submits a retrain "
            "job, which trains, gates, canaries and promotes a new version while traffic keeps "
            "flowing, and write the HTML drift report. Prints a summary at the end (with the log "
            "file that holds Ray's and MLflow's own messages). Exits 0 only when every step happened."
        ),
    )
    add_config(demo, default_help="the packaged demo config")
    demo.add_argument("--rows", type=int, default=5000, help="rows of demo data to generate (default 5000)")
    demo.set_defaults(handler=_cmd_demo)


def register_jobs(sub: Any) -> None:
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
    add_config(retrain)
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
    add_config(submit)
    submit.set_defaults(job_args=[])  # the words after `--` (main() splits them off)
    submit.set_defaults(handler=_cmd_submit)


def _cmd_demo(args: argparse.Namespace) -> int:
    from raymlops import pipeline

    config = project_config(args, fallback=pipeline.packaged_demo_config())
    summary = pipeline.demo(config, num_rows=args.rows, step=Step(), say=say, quiet=True)
    print()
    print(summary.render())
    return 0 if summary.ok else 1


def _cmd_retrain(args: argparse.Namespace) -> int:
    import json

    from raymlops import pipeline

    config = project_config(args)
    started = time.perf_counter()

    def say(message: str) -> None:  # a job's log has no clock of its own: each step says when it ran
        print(f"  [{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    def run() -> int:
        outcome = pipeline.retrain(
            config, submission_id=args.submission_id, labels_after_us=args.labels_after_us, say=say
        )
        print(json.dumps({"ok": True, **outcome.summary()}, default=str), flush=True)
        return 0

    return with_runtime(config, run)


def _cmd_submit(args: argparse.Namespace) -> int:
    from raymlops._internal.submit import submit_and_follow

    config = project_config(args)
    return submit_and_follow(
        args.job, config, config_path(args), address=args.address, job_args=args.job_args
    )
