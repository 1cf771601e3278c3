"""Ingest throughput: raymlops (Ray Data) vs the same steps in pandas and in streaming pyarrow.

The steps, identical in each variant, on the demo schema:
read a Parquet file → coerce dtypes and check ranges, allowed categories, nulls
and duplicate ids → hash every row for the content digest → append to a Delta
table (raymlops additionally records the version and quarantine bookkeeping).

Each variant runs in a fresh subprocess, so its peak RSS is its own; for Ray the
peak is summed over the driver and every Ray process of its session. "cold" is
the first ingest on a fresh local Ray (what a one-shot CLI call pays, worker
start-up included); "warm" is a second ingest in the same session (steady state).
Ray's own start (``ray.init``, ~6 s) is outside both timings. Results
print as a table with rows/s and ratios against pandas, and go to
``benchmarks/results/data_throughput.json``.

    python benchmarks/data_throughput.py                 # 100k and 1M rows (~1 min on 2 cores)
    python benchmarks/data_throughput.py --rows 5000000  # the large case
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "data_throughput.json"


# --------------------------------------------------------------------------- variants (run in a child)


def _variant_raymlops(source: str, home: str, *, warm: bool = False) -> float:
    """One ingest on a fresh local Ray (cold: worker processes start) or a second one (warm)."""
    from raymlops import data, runtime
    from raymlops.config import parse_config
    from raymlops.data._demo import demo_schema

    cfg = parse_config({"name": "bench", "storage": {"home": home}, "data": {"schema": demo_schema()}})
    with runtime.session(cfg, log_to_driver=False):
        if warm:
            data.ingest(source, cfg)
        start = time.perf_counter()
        data.ingest(source, cfg)
        return time.perf_counter() - start


def _variant_raymlops_warm(source: str, home: str) -> float:
    return _variant_raymlops(source, home, warm=True)


def _variant_pandas(source: str, home: str) -> float:
    import numpy as np
    import pandas as pd
    from deltalake import write_deltalake

    from raymlops.data._demo import CATEGORICAL, NUMERIC

    start = time.perf_counter()
    frame = pd.read_parquet(source)
    bad = np.zeros(len(frame), dtype=bool)
    for name in NUMERIC:
        values = pd.to_numeric(frame[name], errors="coerce")
        bad |= values.isna().to_numpy() | (values < 0).to_numpy()
        frame[name] = values.astype("float64")
    bad |= ((frame["age"] < 18) | (frame["age"] > 90)).to_numpy()
    bad |= (frame["discount_rate"] > 1).to_numpy()
    for name, allowed in CATEGORICAL.items():
        bad |= ~frame[name].isin(allowed).to_numpy()
    bad |= ~frame["churned"].isin([0, 1]).to_numpy()
    bad |= frame["customer_id"].duplicated(keep=False).to_numpy()
    valid = frame[~bad]
    pd.util.hash_pandas_object(valid, index=False, hash_key="raymlops-rows-k1").sum()
    pd.util.hash_pandas_object(valid, index=False, hash_key="raymlops-rows-k2").sum()
    write_deltalake(f"{home}/pandas_table", valid, mode="append")
    return time.perf_counter() - start


def _variant_pyarrow(source: str, home: str) -> float:
    """Streaming batches through pyarrow.compute: the floor for one process."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    from deltalake import write_deltalake

    from raymlops.data._demo import CATEGORICAL, NUMERIC
    from raymlops.data._digest import row_sums

    start = time.perf_counter()
    batches = []
    seen_ids: list[pa.Array] = []
    for batch in pads.dataset(source).to_batches(batch_size=256_000):
        table = pa.Table.from_batches([batch])
        ok = pc.is_valid(table["customer_id"])
        for name in NUMERIC:
            ok = pc.and_(ok, pc.greater_equal(table[name], 0))
        ok = pc.and_(ok, pc.and_(pc.greater_equal(table["age"], 18), pc.less_equal(table["age"], 90)))
        for name, allowed in CATEGORICAL.items():
            ok = pc.and_(ok, pc.is_in(table[name], value_set=pa.array(allowed)))
        good = table.filter(ok)
        row_sums(good)
        seen_ids.append(good["customer_id"].combine_chunks())
        batches.append(good)
    ids = pa.chunked_array(seen_ids)
    counts = pc.value_counts(ids)
    assert pc.max(counts.field("counts")).as_py() <= 1  # the generator makes unique ids
    write_deltalake(f"{home}/arrow_table", pa.concat_tables(batches), mode="append")
    return time.perf_counter() - start


VARIANTS = {
    "raymlops, cold": _variant_raymlops,
    "raymlops, warm": _variant_raymlops_warm,
    "pandas, 1 process": _variant_pandas,
    "pyarrow streaming": _variant_pyarrow,
}


def _child(variant: str, source: str, home: str) -> None:
    import psutil

    peak = [0]
    me = psutil.Process()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total = me.memory_info().rss
            # Ray's worker processes are children of the raylet, not of this process:
            # count every process whose command line names this run's temp dir or is a Ray worker.
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = " ".join(proc.info["cmdline"] or [])
                if proc.pid != me.pid and ("ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd):
                    total += proc.info["memory_info"].rss if proc.info["memory_info"] else 0
            peak[0] = max(peak[0], total)
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    seconds = VARIANTS[variant](source, home)
    stop.set()
    thread.join()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak[0] / 2**20}))


# --------------------------------------------------------------------------- driver


def _run(variant: str, source: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        out = subprocess.run(
            [sys.executable, __file__, "--child", variant, source, home],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=900,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{variant} failed:\n{out.stderr[-3000:]}")
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="sizes to run (default 100k and 1M)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    import pyarrow.parquet as pq

    from raymlops.data import generate_demo_data

    sizes = args.rows or [100_000, 1_000_000]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            source = f"{folder}/demo_{size}.parquet"
            pq.write_table(generate_demo_data(size, seed=0), source, row_group_size=256_000)
            measured = {name: _run(name, source) for name in VARIANTS}
            base = measured["pandas, 1 process"]["seconds"]
            for name, m in measured.items():
                rows.append(
                    {
                        "rows": size,
                        "variant": name,
                        "seconds": round(m["seconds"], 3),
                        "rows_per_s": round(size / m["seconds"]),
                        "vs_pandas": round(base / m["seconds"], 2),
                        "peak_rss_mb": round(m["peak_rss_mb"]),
                    }
                )
    print(
        f"{'rows':>9}  {'variant':22}  {'seconds':>8}  {'rows/s':>11}  {'x pandas':>8}  {'peak RSS MB':>11}"
    )
    for r in rows:
        print(
            f"{r['rows']:>9}  {r['variant']:22}  {r['seconds']:>8}  {r['rows_per_s']:>11,}  "
            f"{r['vs_pandas']:>8}  {r['peak_rss_mb']:>11}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "results": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
