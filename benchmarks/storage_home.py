"""What an object-store home costs: the 1M-row ingest and one training fit, home on S3 vs on local disk.

Informational: the S3 API is ``moto_server`` on loopback, not S3 (no network
latency, no throttling, Python request handling), so the ratio says what the
object-store code path costs in this process, and the request counts and bytes
say what it would send to a real store. The local variant keeps MLflow on
SQLite under the home (the embedded default); the S3 variant uses an ``mlflow
server`` with its artifacts in the bucket, as a cluster must.

Each measurement gets its own embedded Ray session (an embedded head hands its
home to every worker), warmed by a small ingest first; the variants are paired
round by round in alternating order (the first round is a warm-up and
discarded); each figure is the median with the min–max of the kept rounds. Requests are counted from
moto's access log by HTTP method; bytes are what the bucket holds afterwards.

    python benchmarks/storage_home.py                 # 1M-row ingest, 3 kept rounds; 2 kept fits (~6 min)
    python benchmarks/storage_home.py --rows 200000 --rounds 2
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results") / "storage_home.json"
BUCKET = "raymlops-bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {limit_s:.0f} s")


class Requests:
    """Counts the requests moto served since the last ``take``, by HTTP method, from its access log."""

    def __init__(self, log: Path) -> None:
        self.log, self.offset = log, 0

    def take(self) -> dict[str, int]:
        text = self.log.read_text(errors="replace")
        new, self.offset = text[self.offset :], len(text)
        return dict(collections.Counter(re.findall(r'"(GET|PUT|POST|HEAD|DELETE) ', new)))


def _bucket_bytes(prefix: str) -> tuple[int, int]:
    import boto3

    s3 = boto3.client("s3")
    count = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            count, size = count + 1, size + int(item["Size"])
    return count, size


def _config(home: str, tracking: str | None, table: str, epochs: int) -> Any:
    from raymlops.config import parse_config
    from raymlops.data._demo import demo_schema

    storage: dict[str, Any] = {"home": home}
    if tracking:
        storage["mlflow_tracking_uri"] = tracking
    return parse_config(
        {
            "name": "bench",
            "storage": storage,
            "data": {"schema": demo_schema(), "table": table},
            "training": {"num_workers": 2, "cpus_per_worker": 0.5, "epochs": epochs},
        }
    )


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows ingested per round")
    parser.add_argument("--rounds", type=int, default=3, help="kept paired rounds (one warm-up more)")
    parser.add_argument("--fit-rows", type=int, default=20_000, help="rows of the table one fit trains on")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fit-rounds", type=int, default=2, help="kept paired fits (one warm-up more)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="rmo-bench-s3-"))
    moto_port, mlflow_port = _free_port(), _free_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    os.environ.update(env)  # before Ray starts: its workers inherit them
    moto_log = folder / "moto.log"
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=moto_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ]
    try:
        _wait(f"http://127.0.0.1:{moto_port}/moto-api/")
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        servers.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "mlflow", "server", "--workers", "1"),
                    *("--backend-store-uri", f"sqlite:///{folder}/mlflow.db"),
                    *("--artifacts-destination", f"s3://{BUCKET}/mlartifacts"),
                    *("--host", "127.0.0.1", "--port", str(mlflow_port)),
                ],
                stdout=(folder / "mlflow.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=folder,
            )
        )
        _wait(f"http://127.0.0.1:{mlflow_port}/health")
        results = _run(args, folder, f"http://127.0.0.1:{mlflow_port}", Requests(moto_log))
    finally:
        for server in servers:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    _print(results)


def _run(args: argparse.Namespace, folder: Path, tracking: str, requests: Requests) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from raymlops import data, runtime, train
    from raymlops.data._demo import generate

    source = folder / "source.parquet"
    pq.write_table(generate(args.rows, seed=1), source)
    fit_source = folder / "fit.parquet"
    pq.write_table(generate(args.fit_rows, seed=2), fit_source)
    warm = folder / "warm.parquet"
    pq.write_table(generate(2_000, seed=3), warm)
    local_home = str(folder / "home")
    s3_home = f"s3://{BUCKET}/home"
    times: dict[str, list[float]] = {"local": [], "s3": []}
    calls: dict[str, int] = collections.Counter()

    def config_for(kind: str, table: str) -> Any:
        home, server = (local_home, None) if kind == "local" else (s3_home, tracking)
        return _config(home, server, table, args.epochs)

    # one Ray session per measurement: an embedded head hands its home to every worker
    # (RAYMLOPS_HOME), so two homes never share a session
    for round_ in range(args.rounds + 1):
        for kind in ["local", "s3"] if round_ % 2 == 0 else ["s3", "local"]:
            cfg = config_for(kind, f"ingest{round_}")
            with runtime.session(cfg, log_to_driver=False):
                data.ingest(str(warm), config_for(kind, "warm"), mode="overwrite")  # workers started
                requests.take()
                start = time.perf_counter()
                data.ingest(str(source), cfg, mode="overwrite")
                elapsed = time.perf_counter() - start
                taken = requests.take()
            if round_ > 0:  # the first round is a warm-up
                times[kind].append(elapsed)
                if kind == "s3":
                    calls.update(taken)
    num_objects, num_bytes = _bucket_bytes(f"home/data/ingest{args.rounds}")
    fits: dict[str, list[float]] = {"local": [], "s3": []}
    fit_calls: dict[str, int] = {}
    for round_ in range(args.fit_rounds + 1):
        for kind in ["local", "s3"] if round_ % 2 == 0 else ["s3", "local"]:
            cfg = config_for(kind, "fit")
            with runtime.session(cfg, log_to_driver=False):
                prepared = data.prepare(data.ingest(str(fit_source), cfg, mode="overwrite"), cfg)
                requests.take()
                start = time.perf_counter()
                train.run(prepared, cfg)
                elapsed = time.perf_counter() - start
                taken = sum(requests.take().values())
            if round_ > 0:  # the first fit of each kind creates the MLflow store and experiment
                fits[kind].append(elapsed)
                fit_calls[kind] = taken
    fit_objects, fit_bytes = _bucket_bytes("home/train")
    art_objects, art_bytes = _bucket_bytes("mlartifacts")
    kept = args.rounds
    return {
        "rows": args.rows,
        "rounds_kept": kept,
        "ingest_s": {k: _summary(v) for k, v in times.items()},
        "ingest_ratio_s3_over_local": _summary(
            [s / max(loc, 1e-9) for s, loc in zip(times["s3"], times["local"], strict=True)]
        ),
        "ingest_requests_per_round": {m: n // kept for m, n in calls.items()},
        "ingest_table_objects": num_objects,
        "ingest_table_bytes": num_bytes,
        "fit_rows": args.fit_rows,
        "fit_epochs": args.epochs,
        "fit_rounds_kept": args.fit_rounds,
        "fit_s": {k: _summary(v) for k, v in fits.items()},
        "fit_ratio_s3_over_local": _summary(
            [s / loc for s, loc in zip(fits["s3"], fits["local"], strict=True)]
        ),
        "fit_s3_requests": fit_calls["s3"],
        "checkpoint_objects": fit_objects,
        "checkpoint_bytes": fit_bytes,
        "mlflow_artifact_objects": art_objects,
        "mlflow_artifact_bytes": art_bytes,
        "python": sys.version.split()[0],
    }


def _print(r: dict[str, Any]) -> None:
    ingest = r["ingest_s"]
    print(f"ingest of {r['rows']:,} rows, median (min–max) of {r['rounds_kept']} paired rounds")
    for kind in ("local", "s3"):
        s = ingest[kind]
        print(f"  {kind:<6} {s['median']:7.2f} s  ({s['min']:.2f}–{s['max']:.2f})")
    ratio = r["ingest_ratio_s3_over_local"]
    print(f"  s3 / local  {ratio['median']:.2f}×  ({ratio['min']:.2f}–{ratio['max']:.2f})")
    print(f"  requests per ingest on s3: {r['ingest_requests_per_round']}")
    print(
        f"  table in the bucket: {r['ingest_table_objects']} objects, {r['ingest_table_bytes'] / 1e6:.1f} MB"
    )
    print(
        f"one fit ({r['fit_rows']:,} rows, {r['fit_epochs']} epochs, 2 workers), "
        f"{r['fit_rounds_kept']} paired rounds"
    )
    for kind in ("local", "s3"):
        f = r["fit_s"][kind]
        print(f"  {kind:<6} {f['median']:7.2f} s  ({f['min']:.2f}–{f['max']:.2f})")
    fr = r["fit_ratio_s3_over_local"]
    print(f"  s3 / local  {fr['median']:.2f}×  ({fr['min']:.2f}–{fr['max']:.2f})")
    print(
        f"  {r['fit_s3_requests']} requests; checkpoints {r['checkpoint_objects']} objects "
        f"{r['checkpoint_bytes'] / 1e6:.2f} MB; MLflow artifacts {r['mlflow_artifact_objects']} objects "
        f"{r['mlflow_artifact_bytes'] / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
