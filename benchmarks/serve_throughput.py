"""Serving throughput: the raymlops endpoint side by side with a bare FastAPI server and default Ray Serve.

Every variant serves the same registered bundle (the demo churn model) and does
the same work per request: parse JSON, validate the records against the schema,
preprocess, predict, answer JSON. The load generator is ``wrk`` (a C program
outside Python's event loop; ``apt-get install wrk``), POSTing 5 records per
request, at each concurrency for ``--duration-s`` seconds after a warm-up.

Variants (the default set first; ``--variants all`` adds the rest):
  bare-fastapi       uvicorn, 2 worker processes (one per core), no Ray: what a user
                     would otherwise write; the baseline of every ratio
  raymlops           the raymlops endpoint as `raymlops serve` runs it: HAProxy ingress,
                     batching, inference log, drift monitor ingesting the log
  raymlops-nobatch   the same with max_batch_size 1
  raymlops-nolog     the same with the inference log off (and so no monitor)
  ray-serve-default  a plain @serve.deployment + FastAPI ingress with Ray's defaults
                     (max_ongoing_requests=5, no batching, Python proxy)
  raymlops-python    the raymlops endpoint behind Serve's Python proxy (serving.ingress: python)
  raymlops-nojournal the default endpoint with the log's write-ahead journal off

The raymlops endpoints run side by side in one Ray session (HAProxy), each its
own Serve app, registered model and log; the Python-proxy variants need a Ray
session of their own (Serve reads the ingress from the environment when Ray
starts). After the table, the inference log's overhead is measured on its own
at concurrency 32 in rotating rounds (``--overhead-rounds``): log off, log
written by the replica, log + monitor.

    python benchmarks/serve_throughput.py                 # ~4 min on 2 cores
    python benchmarks/serve_throughput.py --variants all --duration-s 5   # every variant, ~7 min

Beside throughput it times two operations against the bare server:

  cold start   nothing running → the first 200 from /predict (raymlops: a fresh
               local Ray, then the deploy; bare: uvicorn's 2 processes)
  model swap   a new version promoted → the endpoint answers with it, serving all
               along (bare: the only way it has, stop and restart on the new bundle)

Results print as tables (requests/s, p50/p99 ms, non-2xx, × bare FastAPI; the
timings) and go to ``benchmarks/results/serve_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "serve_throughput.json"
RECORDS_PER_REQUEST = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(home: Path, port: int, name: str = "bench", monitoring: bool = True, **serving: object):
    """The benchmark's project: endpoint ``name`` at ``/name``; retraining off (its traffic never changes)."""
    from raymlops.config import parse_config
    from raymlops.data._demo import demo_schema

    return parse_config(
        {
            "name": name,
            "storage": {"home": str(home)},
            "data": {"schema": demo_schema()},
            "training": {"num_workers": 1, "epochs": 2, "cpus_per_worker": 0.5},
            "serving": {"port": port, "num_replicas": 1, "route_prefix": f"/{name}", **serving},
            "monitoring": {"enabled": monitoring},
            "retraining": {"enabled": False},
        }
    )


# The endpoints of the HAProxy session, all deployed side by side: variant → (app name,
# serving overrides, drift monitor on). Each app is its own registered model, log and monitor.
ENDPOINTS: dict[str, tuple[str, dict, bool]] = {
    "raymlops": ("bench", {}, True),
    "raymlops-nobatch": ("bench-nobatch", {"max_batch_size": 1}, True),
    "raymlops-nolog": ("bench-nolog", {"inference_log": False}, False),
    "raymlops-nojournal": ("bench-nojournal", {"log_journal": False}, True),
    "log-by-replica": ("bench-log", {}, False),  # the overhead rounds only: replicas write Delta
}
# the overhead rounds' variants → the endpoint each one loads
OVERHEAD = {"log-off": "raymlops-nolog", "log": "log-by-replica", "log+monitor": "raymlops"}
ALL_VARIANTS = [
    "bare-fastapi",
    "ray-serve-default",
    "raymlops-python",
    "raymlops",
    "raymlops-nobatch",
    "raymlops-nolog",
    "raymlops-nojournal",
]
DEFAULT_VARIANTS = ["bare-fastapi", "raymlops", "raymlops-nobatch", "raymlops-nolog"]


def _prepare_model(home: Path, names: list[str]) -> tuple[str, list[dict], int]:
    """Train a demo model and promote it under each of ``names``; register a second version of ``bench``.

    Returns the bundle folder, a request's records and the second version of ``bench``.
    """
    import pyarrow.csv as pacsv

    from raymlops import data, registry, runtime, train

    cfg = _config(home, 8000, ingress="python")
    source = home / "train.csv"
    home.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(data.generate_demo_data(3000, seed=5), source)
    with runtime.session(cfg, log_to_driver=False):
        prepared = data.prepare(data.ingest(str(source), cfg), cfg)
        trained = train.run(prepared, cfg)
        for name in names:  # registering reads the test split: in session
            named = _config(home, 8000, name)
            registry.promote(
                named, f"{name}/{registry.register(trained, named).version}", reason="benchmark", force=True
            )
        swap_to = registry.register(trained, cfg).version
    version = registry.champion(cfg).version
    import mlflow

    bundle = mlflow.artifacts.download_artifacts(
        f"models:/bench/{version}/artifacts/bundle", dst_path=str(home / "b")
    )
    rows = data.generate_demo_data(RECORDS_PER_REQUEST, seed=9).to_pandas()
    features = list(cfg.data.schema.feature_names)
    return bundle, json.loads(rows[features].to_json(orient="records")), swap_to


# --------------------------------------------------------------------------- load generation


def _wrk(url: str, body: str, concurrency: int, duration_s: float, folder: Path) -> dict:
    """wrk's figures after a 1 s warm-up (whose requests are counted as ``warm_up_requests``)."""
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    threads = min(2, concurrency)
    warm_up = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", "-d1s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=False,
    )
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{int(duration_s)}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = _parse_wrk(done.stdout)
    figures["warm_up_requests"] = _parse_wrk(warm_up.stdout)["requests"]
    return figures


def _parse_wrk(text: str) -> dict:
    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests_per_s": float(rps.group(1)) if rps else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "p50_ms": latency_ms("50%"),
        "p99_ms": latency_ms("99%"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def _measure(name: str, url: str, body: str, args: argparse.Namespace, folder: Path) -> list[dict]:
    rows = []
    for concurrency in args.concurrency:
        result = _wrk(url, body, concurrency, args.duration_s, folder)
        result.pop("warm_up_requests")
        result.update(variant=name, concurrency=concurrency)
        rows.append(result)
        print(
            f"  {name:<18} c={concurrency:<3} {result['requests_per_s']:>8.1f} req/s  "
            f"p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  non-2xx {result['non_2xx']}",
            flush=True,
        )
    return rows


def _wait_http(url: str, timeout_s: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


# --------------------------------------------------------------------------- variants

BARE_APP = textwrap.dedent(
    """
    import json, os
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from pydantic import ValidationError
    from raymlops.bundle import Predictor
    from raymlops.serve._requests import problems, request_model
    import pandas as pd

    import torch
    torch.set_num_threads(1)  # one process per core: torch's own threads would fight over the cores
    predictor = Predictor.from_folder(os.environ["BENCH_BUNDLE"])
    model = request_model(predictor.schema)
    columns = predictor.feature_names
    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: Request):
        raw = json.loads(await request.body())
        try:
            model.model_validate(raw)
        except ValidationError as e:
            return Response(json.dumps({"problems": problems(e)}), status_code=422)
        frame = pd.DataFrame.from_records(raw["records"], columns=columns)
        out = predictor.predict_frame(frame, checked=True)
        body = {"predictions": out["prediction"].tolist(), "probabilities": out["probability"].tolist()}
        return Response(json.dumps(body), media_type="application/json")
    """
)


def _first_prediction(url: str, body: str, timeout_s: float = 180) -> None:
    """Poll until ``url`` answers a prediction with 200."""
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.post(url, data=body, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} gave no prediction within {timeout_s:.0f} s")


def _spawn_bare(bundle: str, port: int, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "BENCH_BUNDLE": bundle, "PYTHONPATH": str(folder)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=folder,
        env=env,
        start_new_session=True,
    )


def _stop_bare(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(30)


def _bare_fastapi(
    bundle: str, body: str, args: argparse.Namespace, folder: Path, timings: dict
) -> list[dict]:
    """The baseline's throughput; its cold start, and a model swap done the only way it can: a restart."""
    (folder / "bare_app.py").write_text(BARE_APP)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/predict"
    started = time.perf_counter()
    server = _spawn_bare(bundle, port, folder)
    try:
        _first_prediction(url, body)
        timings["bare-fastapi"] = {"cold_start_s": time.perf_counter() - started}
        rows = _measure("bare-fastapi", url, body, args, folder)
    finally:
        started = time.perf_counter()  # swap: stop the old server, start one on the new bundle
        _stop_bare(server)
    server = _spawn_bare(bundle, port, folder)
    try:
        _first_prediction(url, body)
        timings["bare-fastapi"]["model_swap_s"] = time.perf_counter() - started
    finally:
        _stop_bare(server)
    return rows


def _default_serve_app(bundle: str):
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.25})
    @serve.ingress(api)
    class Plain:
        def __init__(self, folder: str) -> None:
            import torch

            from raymlops.bundle import Predictor
            from raymlops.serve._requests import request_model

            torch.set_num_threads(1)
            self.predictor = Predictor.from_folder(folder)
            self.model = request_model(self.predictor.schema)

        async def predict(self, request: Request) -> Response:
            import pandas as pd

            raw = json.loads(await request.body())
            self.model.model_validate(raw)
            frame = pd.DataFrame.from_records(raw["records"], columns=self.predictor.feature_names)
            out = self.predictor.predict_frame(frame, checked=True)
            answer = {"predictions": out["prediction"].tolist(), "probabilities": out["probability"].tolist()}
            return Response(json.dumps(answer), media_type="application/json")

        # this module uses postponed annotations; FastAPI needs the real classes to see a Request
        predict.__annotations__ = {"request": Request, "return": Response}  # noqa: RUF012
        predict = api.post("/predict")(predict)

        @api.get("/healthz")
        async def healthz(self) -> dict:
            return {"status": "ok"}

    return Plain.bind(bundle)


def _swap(cfg, version: int, url: str, body: str) -> float:
    """Promote ``version``; seconds until the endpoint answers with it.

    The endpoint keeps serving while it swaps: replicas see the alias move within
    ``serving.watch_interval_s``, load the new bundle and switch atomically.
    """
    import requests

    from raymlops import registry

    started = time.perf_counter()
    registry.promote(cfg, f"{cfg.name}/{version}", reason="benchmark swap", force=True)
    while time.perf_counter() - started < 120:
        try:
            answer = requests.post(url, data=body, timeout=10)
            if answer.status_code == 200 and answer.json().get("model_version") == str(version):
                return time.perf_counter() - started
        except requests.RequestException:
            pass  # counted in the time: a swap that drops requests is slower, not faster
        time.sleep(0.05)
    raise RuntimeError(f"version {version} was not serving 120 s after its promotion")


def _actor_pids(app_name: str) -> list[int]:
    """The processes that are ``app_name``'s own: its Serve replicas and its drift monitor."""
    from ray.util.state import list_actors

    found = []
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000):
        name = actor.name or ""
        if f"::{app_name}#" in name or name == f"raymlops-monitor-{app_name}":
            found.append(int(actor.pid))
    return found


def _logging_overhead(
    urls: dict[str, str], pids: dict[str, list[int]], body: str, args: argparse.Namespace, folder: Path
) -> list[dict]:
    """The inference log's cost: log off, log on, log on with the drift monitor ingesting it.

    Run-to-run noise on 2 cores shared with the load generator is larger than
    the effect (earlier runs: 359 vs 333 req/s one way, 393 vs 170 the other), so
    the three endpoints, deployed side by side, take turns in short rounds (the
    order rotating each round) and each round gives a paired ratio against log
    off; the medians are reported. Beside req/s: the CPU time of each variant's
    own processes (its replica; the monitor for log+monitor) per request, summed
    over all rounds, so work a variant leaves for after its turn (the last
    flush, the monitor's windows) is still counted as its own.
    """
    names = list(OVERHEAD)
    own_before = _cpu_of(pids)
    served = dict.fromkeys(names, 0)
    rows = []
    for round_index in range(args.overhead_rounds):
        order = names[round_index % 3 :] + names[: round_index % 3]
        for name in order:
            result = _wrk(urls[name], body, args.overhead_concurrency, args.overhead_duration_s, folder)
            served[name] += result["requests"] + result.pop("warm_up_requests")
            result.update(variant=name, round=round_index, concurrency=args.overhead_concurrency)
            rows.append(result)
            print(
                f"  overhead round {round_index + 1}/{args.overhead_rounds} {name:<12} "
                f"{result['requests_per_s']:>7.1f} req/s",
                flush=True,
            )
    time.sleep(3.0)  # the last round's flush and the monitor's last check (monitoring.check_interval_s)
    own_after = _cpu_of(pids)
    for r in rows:
        name = r["variant"]
        r["own_cpu_ms_per_request"] = 1000 * (own_after[name] - own_before[name]) / max(served[name], 1)
    return rows


def _cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    import psutil

    total: dict[str, float] = {}
    for name, found in pids.items():
        total[name] = 0.0
        for pid in found:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total[name] += times.user + times.system
    return total


def _overhead_table(rows: list[dict]) -> str:
    import statistics

    off = {r["round"]: r for r in rows if r["variant"] == "log-off"}
    lines = [
        "| variant | req/s, median (min–max) | × log off, paired median | own CPU ms / request "
        "| overhead (CPU) |",
        "|---|---:|---:|---:|---:|",
    ]
    base_cpu = next(iter(off.values()))["own_cpu_ms_per_request"]
    for name in OVERHEAD:
        mine = [r for r in rows if r["variant"] == name]
        rps = [r["requests_per_s"] for r in mine]
        paired = [r["requests_per_s"] / off[r["round"]]["requests_per_s"] for r in mine]
        cpu = mine[0]["own_cpu_ms_per_request"]
        lines.append(
            f"| {name} | {statistics.median(rps):,.0f} ({min(rps):,.0f}–{max(rps):,.0f}) | "
            f"{statistics.median(paired):.3f} | {cpu:.2f} | {100 * (cpu / base_cpu - 1):+.1f} % |"
        )
    return "\n".join(lines)


def _python_session(
    variants: list[str], home: Path, bundle: str, body: str, args: argparse.Namespace, folder: Path
) -> list[dict]:
    """A fresh local Ray with Serve's own Python proxy: Ray's defaults, and raymlops behind that proxy."""
    from ray import serve

    from raymlops import runtime
    from raymlops import serve as rserve

    _forget_ingress()
    port = _free_port()
    rows: list[dict] = []
    base = _config(home, port, ingress="python")
    with runtime.session(base, log_to_driver=False):
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        if "ray-serve-default" in variants:
            serve.run(_default_serve_app(bundle), name="plain", route_prefix="/plain")
            _wait_http(f"http://127.0.0.1:{port}/plain/healthz")
            rows += _measure(
                "ray-serve-default", f"http://127.0.0.1:{port}/plain/predict", body, args, folder
            )
            serve.delete("plain")
        if "raymlops-python" in variants:
            endpoint = rserve.deploy(_config(home, port, monitoring=False, ingress="python"))
            _first_prediction(f"{endpoint.url}/predict", body)
            rows += _measure("raymlops-python", f"{endpoint.url}/predict", body, args, folder)
        serve.shutdown()
    return rows


def _forget_ingress() -> None:
    """A previous session's ingress must not leak into the next (Serve reads it from the environment)."""
    for key in [k for k in os.environ if k.startswith("RAY_SERVE_") and ("HA_PROXY" in k or "HAPROXY" in k)]:
        del os.environ[key]


def _endpoints(variants: list[str], args: argparse.Namespace) -> list[str]:
    """The HAProxy session's endpoints, ``raymlops`` first (it gives the cold start and the swap)."""
    overhead = OVERHEAD.values() if args.overhead_rounds else ()
    return [v for v in ENDPOINTS if v == "raymlops" or v in variants or v in overhead]


def _haproxy_session(
    variants: list[str],
    home: Path,
    body: str,
    args: argparse.Namespace,
    folder: Path,
    timings: dict,
    swap_to: int,
) -> list[dict]:
    """A fresh local Ray with the default HAProxy ingress and every raymlops endpoint side by side.

    The default endpoint (``raymlops``: log on, drift monitor ingesting it) is
    deployed first and alone, as ``raymlops serve`` would: that is the cold
    start. The others follow together, then each is loaded in turn.
    """
    from ray import serve

    from raymlops import monitor, pipeline, runtime
    from raymlops import serve as rserve

    _forget_ingress()
    port = _free_port()
    wanted = _endpoints(variants, args)
    configs = {
        v: _config(home, port, ENDPOINTS[v][0], monitoring=ENDPOINTS[v][2], **ENDPOINTS[v][1]) for v in wanted
    }
    rows: list[dict] = []
    started = time.perf_counter()
    with runtime.session(configs["raymlops"], log_to_driver=False):
        ray_start_s = time.perf_counter() - started  # a local Ray: GCS, raylet, dashboard
        started = time.perf_counter()
        # what `raymlops serve` runs: Serve's controller and proxy, the drift monitor, the replica
        urls = {"raymlops": f"{pipeline.deploy(configs['raymlops']).url}/predict"}
        _first_prediction(urls["raymlops"], body)
        deploy_s = time.perf_counter() - started
        timings["raymlops"] = {
            "ray_start_s": ray_start_s,
            "deploy_s": deploy_s,
            "cold_start_s": ray_start_s + deploy_s,
        }
        print(
            f"  raymlops: cold start {ray_start_s + deploy_s:.1f} s; {len(wanted) - 1} more endpoints now",
            flush=True,
        )
        for v in wanted[1:]:
            if configs[v].monitoring.enabled:
                monitor.start(configs[v], jobs_address=None)
            serve.run(
                rserve.app(configs[v]),
                name=configs[v].name,
                route_prefix=configs[v].serving.route_prefix,
                blocking=False,
            )
            urls[v] = f"{rserve.endpoint_url(configs[v])}/predict"
        for v in wanted[1:]:
            _first_prediction(urls[v], body)
        for v in wanted:
            if v in variants:
                rows += _measure(v, urls[v], body, args, folder)
        timings["raymlops"]["model_swap_s"] = _swap(configs["raymlops"], swap_to, urls["raymlops"], body)
        if args.overhead_rounds:
            pids = {name: _actor_pids(configs[v].name) for name, v in OVERHEAD.items()}
            rows += _logging_overhead(
                {name: urls[v] for name, v in OVERHEAD.items()}, pids, body, args, folder
            )
        for v in wanted:
            if configs[v].monitoring.enabled:
                monitor.stop(configs[v])
        serve.shutdown()  # every app at once (one by one, each waits out its drain period)
    return rows


# --------------------------------------------------------------------------- report


def _table(rows: list[dict]) -> str:
    base = {r["concurrency"]: r["requests_per_s"] for r in rows if r["variant"] == "bare-fastapi"}
    lines = [
        "| variant | concurrency | req/s | × bare FastAPI | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["concurrency"], r["variant"])):
        ratio = r["requests_per_s"] / base[r["concurrency"]] if base.get(r["concurrency"]) else float("nan")
        lines.append(
            f"| {r['variant']} | {r['concurrency']} | {r['requests_per_s']:,.0f} | {ratio:.2f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx'] + r['socket_errors']} |"
        )
    return "\n".join(lines)


def _timings_table(timings: dict[str, dict[str, float]]) -> str:
    """Cold start (nothing running → first 200) and model swap, raymlops beside the bare server."""
    base = timings.get("bare-fastapi", {})
    lines = ["| variant | measure | seconds | × bare FastAPI |", "|---|---|---:|---:|"]
    for variant, values in timings.items():
        for measure, seconds in values.items():
            ratio = f"{seconds / base[measure]:.2f}" if measure in base else "–"
            lines.append(f"| {variant} | {measure} | {seconds:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument(
        "--duration-s", type=int, default=3, help="seconds of load per point, after 1 s of warm-up"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=DEFAULT_VARIANTS,
        choices=[*ALL_VARIANTS, "all"],
        help=f"variants of the main table (default: {' '.join(DEFAULT_VARIANTS)}; all: every one)",
    )
    parser.add_argument(
        "--overhead-rounds", type=int, default=8, help="rounds of log off / log / log+monitor (0: skip)"
    )
    parser.add_argument("--overhead-concurrency", type=int, default=32)
    parser.add_argument("--overhead-duration-s", type=int, default=3)
    args = parser.parse_args()
    variants = ALL_VARIANTS if "all" in args.variants else args.variants
    if not shutil.which("wrk"):
        sys.exit("wrk is needed as the load generator: apt-get install wrk (or brew install wrk)")
    os.environ.pop("RAY_ADDRESS", None)
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        home = folder / "home"
        os.environ["RAYMLOPS_HOME"] = str(home)
        print("training the demo model to serve ...", flush=True)
        names = [ENDPOINTS[v][0] for v in _endpoints(variants, args)]
        bundle, records, swap_to = _prepare_model(home, names)
        body = json.dumps({"records": records})
        rows: list[dict] = []
        timings: dict[str, dict[str, float]] = {}
        if "bare-fastapi" in variants:
            rows += _bare_fastapi(bundle, body, args, folder, timings)
        python = [v for v in ("ray-serve-default", "raymlops-python") if v in variants]
        if python:
            rows += _python_session(python, home, bundle, body, args, folder)
        rows += _haproxy_session(variants, home, body, args, folder, timings, swap_to)
    overhead = [r for r in rows if "round" in r]
    rows = [r for r in rows if "round" not in r]
    table = _table(rows)
    print()
    print(table)
    print()
    print(_timings_table(timings))
    if overhead:
        print()
        print(_overhead_table(overhead))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "records_per_request": RECORDS_PER_REQUEST,
                "duration_s": args.duration_s,
                "rows": rows,
                "timings_s": timings,
                "logging_overhead": overhead,
            },
            indent=1,
        )
    )
    print(f"\nwrote {RESULTS} ({time.perf_counter() - begun:.0f} s in all)")


if __name__ == "__main__":
    main()
