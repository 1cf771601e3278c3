"""The closed loop's reaction time: from the onset of drifted traffic to the new model serving.

One run on an embedded local Ray with the packaged demo config (no sweep):
train and promote a first model, serve it with the drift monitor, send one
stationary window, then drifted traffic with late labels, without pause, from
the onset on. The clock starts at the first drifted request and stops at

    (a) the first window the monitor judges drifted,
    (b) the retrain job submitted to the Ray Jobs API,
    (c) the endpoint answering with the retrained version (after the gate and
        the canary).

The baseline, in the same run, once the traffic has stopped: the work the job
did, started by hand in this process: train on the data version the job
appended, register, gate against the champion and promote
(``pipeline.train_and_register`` + ``pipeline.gate_and_promote``). It is what a
user who knew of the drift at once, and had the labelled rows ready, would wait
for. The ratio says how much detection, joining the labels, the Ray job's own
start, the canary and the switch add on top.

    python benchmarks/loop_latency.py           # ~2 min on 2 cores

Results print as a table and go to ``benchmarks/results/loop_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "loop_latency.json"
LIMIT_S = 420.0


def _config(home: Path):
    """The packaged demo config, its home in a temporary folder, retraining without a sweep."""
    from raymlops.config import load_config, parse_config
    from raymlops.pipeline import packaged_demo_config

    raw = load_config(packaged_demo_config()).model_dump(mode="json", by_alias=True)
    raw["storage"]["home"] = str(home)
    raw["retraining"]["sweep"] = False
    raw["training"]["num_workers"] = 1
    return parse_config(raw)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=3000, help="training rows of the first model")
    parser.add_argument(
        "--job-log", action="store_true", help="print the retrain job's log (its steps timed)"
    )
    args = parser.parse_args()

    import pyarrow.csv as pacsv
    import ray

    from raymlops import data, pipeline, runtime
    from raymlops.pipeline._loop import RECORDS_PER_REQUEST, ClosedLoop

    home = Path(tempfile.mkdtemp(prefix="rmo-loop-")) / "home"
    cfg = _config(home)
    quiet = lambda _line: None  # noqa: E731
    clock = time.perf_counter()

    def say(line: str) -> None:
        print(f"  [{time.perf_counter() - clock:6.1f} s] {line}", flush=True)

    figures: dict[str, float | int | str | None] = {}
    with runtime.session(cfg, log_to_driver=False) as rt:
        setup = time.perf_counter()
        csv = home / "customers.csv"
        home.mkdir(parents=True, exist_ok=True)
        pacsv.write_csv(data.generate_demo_data(args.rows, seed=1), csv)
        data.ingest(str(csv), cfg, progress=say)
        first = pipeline.train_and_register(cfg, say=say)
        assert pipeline.gate_and_promote(
            cfg, f"{cfg.name}/{first.model_version.version}", reason="first", say=say
        ).promoted
        say("first model promoted; starting the endpoint and the monitor")
        loop = ClosedLoop(cfg, rt.dashboard_url, quiet)
        loop.start()
        assert loop.traffic is not None
        loop.traffic.send(loop.rows(cfg.monitoring.window_size))  # one stationary window first
        figures["setup_s"] = round(time.perf_counter() - setup, 1)
        print(
            f"set up in {figures['setup_s']} s: first model, endpoint, monitor; drift starts now", flush=True
        )

        stop = threading.Event()

        def drifted_traffic() -> None:
            assert loop.traffic is not None
            while not stop.is_set():
                loop.traffic.send(loop.drifted(RECORDS_PER_REQUEST))

        onset = time.monotonic()
        sender = threading.Thread(target=drifted_traffic, daemon=True)
        sender.start()
        marks: dict[str, float] = {}
        job: dict = {}
        while time.monotonic() - onset < LIMIT_S:
            now = time.monotonic() - onset
            status = ray.get(loop.actor.status.remote())
            if "drifted_window" not in marks and status["num_drifted_windows"] >= 1:
                marks["drifted_window"] = now
            if status["jobs"]:
                job = status["jobs"][-1]
                if "submitted" not in marks and job["stage"] != "pending":
                    marks["submitted"] = now
                if job["stage"] == "done":
                    marks.setdefault("job_done", now)
                    if job["outcome"] != "promoted":
                        break
                    versions = loop.traffic.champion_versions
                    if versions and versions[-1] == job["model_version"]:
                        marks["serving"] = now
                        break
            time.sleep(0.25)
        stop.set()
        sender.join()
        job_runtime_s = None
        if job.get("submission_id"):
            from ray.job_submission import JobSubmissionClient

            client = JobSubmissionClient(rt.dashboard_url)
            info = client.get_job_info(job["submission_id"])
            if info.start_time and info.end_time:
                job_runtime_s = (info.end_time - info.start_time) / 1000
            if args.job_log:
                print(client.get_job_logs(job["submission_id"]), flush=True)
        print(f"loop: {marks}; job {job.get('submission_id')} {job.get('outcome')}", flush=True)

        from raymlops import monitor

        baseline_s = by_hand = None
        result_path = monitor.job_result_path(cfg, job["submission_id"]) if job.get("submission_id") else None
        if result_path is not None and result_path.exists():
            data_version = json.loads(result_path.read_text())["data_version"]
            started = time.perf_counter()
            trained = pipeline.train_and_register(cfg, data_version=data_version, say=say)
            ref = f"{cfg.name}/{trained.model_version.version}"
            by_hand = pipeline.gate_and_promote(
                cfg, ref, reason="by hand", data_version=data_version, say=say
            )
            baseline_s = time.perf_counter() - started
        loop.stop()

    reaction_s = marks.get("serving")
    figures.update(
        {
            "to_first_drifted_window_s": _r(marks.get("drifted_window")),
            "to_job_submitted_s": _r(marks.get("submitted")),
            "job_runtime_s": _r(job_runtime_s),
            "to_job_done_s": _r(marks.get("job_done")),
            "to_new_model_serving_s": _r(reaction_s),
            "job_outcome": job.get("outcome"),
            "canary_duration_s": cfg.retraining.canary_duration_s,
            "retrain_by_hand_s": _r(baseline_s),
            "retrain_by_hand_promoted": by_hand.promoted if by_hand else None,
            "ratio_loop_to_by_hand": _r(reaction_s / baseline_s if reaction_s and baseline_s else None, 2),
        }
    )
    rows = [
        ("drift onset → first drifted window", figures["to_first_drifted_window_s"]),
        ("drift onset → retrain job submitted", figures["to_job_submitted_s"]),
        ("the job itself (Ray's start → end)", figures["job_runtime_s"]),
        ("drift onset → job done", figures["to_job_done_s"]),
        ("drift onset → new model serving", figures["to_new_model_serving_s"]),
        ("baseline: train, gate, promote by hand", figures["retrain_by_hand_s"]),
    ]
    print(f"\n{'step':<40} {'seconds':>8}")
    for name, value in rows:
        print(f"{name:<40} {value if value is not None else '-':>8}")
    print(f"{'loop ÷ by hand':<40} {figures['ratio_loop_to_by_hand'] or '-':>8}")
    shutil.rmtree(home.parent, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "rows": args.rows,
                "results": figures,
            },
            indent=2,
        )
    )


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


if __name__ == "__main__":
    main()
