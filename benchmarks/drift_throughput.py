"""Drift statistics throughput: raymlops' vectorised tests side by side with SciPy's functions.

The same data for all: a reference of 5,000 sampled values per feature (what
the training profile keeps) and a live window of N rows × 20 numeric features
drawn with a small shift. ``raymlops`` runs every numeric test on every feature
(PSI over 10 reference quantile bins, KS statistic + p-value, normalised
Wasserstein) from one sort of each window column, with the reference sorted
once beforehand as the monitor does per model version, features on a thread
pool. ``report`` is the monitor's whole ``drift_report`` on a DataFrame (each
feature's default test, the multiple-testing correction, the verdicts). The
baseline runs ``scipy.stats.ks_2samp`` and ``scipy.stats.wasserstein_distance``
per feature plus a NumPy PSI (SciPy has none). Evidently is compared too when it is installed.

    python benchmarks/drift_throughput.py                     # 10k, 100k, 1M rows (~25 s)
    python benchmarks/drift_throughput.py --rows 10000000     # the large case

Results print as a table and go to ``benchmarks/results/drift_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("results") / "drift_throughput.json"
NUM_FEATURES = 20
REFERENCE_SIZE = 5000


def _data(rows: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    references = [rng.normal(0, 1, REFERENCE_SIZE) for _ in range(NUM_FEATURES)]
    window = rng.normal(0.05, 1.0, (NUM_FEATURES, rows))
    return references, window


def _raymlops(references: list[np.ndarray], window: np.ndarray) -> float:
    """Every numeric test on every feature: one sort per window column, features on a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    from raymlops.monitor import numeric_statistics

    prepared = []
    for ref in references:  # once per model version, outside the timing (as in the monitor)
        edges = np.quantile(ref, np.linspace(0, 1, 11))
        counts, _ = np.histogram(ref, bins=edges)
        prepared.append((np.sort(ref), edges, counts, float(ref.std())))
    tests = ("psi", "ks", "wasserstein")
    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:  # NumPy's sort and cumsum release the GIL
        list(
            pool.map(
                lambda item: numeric_statistics(*item[0], item[1], tests),
                zip(prepared, window, strict=True),
            )
        )
    return time.perf_counter() - start


def _report(references: list[np.ndarray], window: np.ndarray) -> float:
    """The monitor's whole ``drift_report`` on a DataFrame window (each feature's default test)."""
    import pandas as pd
    import pyarrow as pa

    from raymlops.config import MonitoringConfig
    from raymlops.data._profile import build_profile
    from raymlops.monitor import Reference, drift_report

    columns = tuple(f"f{i}" for i in range(NUM_FEATURES))
    table = pa.table({c: ref for c, ref in zip(columns, references, strict=True)})
    profile = build_profile(table, columns, (), num_bins=10, sample_size=REFERENCE_SIZE, seed=0)
    monitoring = MonitoringConfig(window_size=len(window[0]), min_window_size=1)
    reference = Reference(profile, monitoring, columns)
    frame = pd.DataFrame(dict(zip(columns, window, strict=True)))
    start = time.perf_counter()
    drift_report(reference, frame)
    return time.perf_counter() - start


def _scipy(references: list[np.ndarray], window: np.ndarray) -> float:
    from scipy import stats

    start = time.perf_counter()
    for ref, values in zip(references, window, strict=True):
        edges = np.quantile(ref, np.linspace(0, 1, 11))
        p = np.maximum(np.histogram(ref, bins=edges)[0] / len(ref), 1e-4)
        q = np.maximum(np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0] / len(values), 1e-4)
        float(np.sum((q - p) * np.log(q / p)))
        stats.ks_2samp(ref, values)
        stats.wasserstein_distance(ref, values)
    return time.perf_counter() - start


def _evidently(references: list[np.ndarray], window: np.ndarray) -> float | None:
    try:
        import pandas as pd
        from evidently import Report  # type: ignore[import-not-found]
        from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]
    except ImportError:
        return None
    columns = [f"f{i}" for i in range(NUM_FEATURES)]
    reference = pd.DataFrame(np.array(references).T, columns=columns)
    current = pd.DataFrame(window.T, columns=columns)
    start = time.perf_counter()
    Report([DataDriftPreset()]).run(reference_data=reference, current_data=current)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per variant")
    args = parser.parse_args()
    rows_out = []
    print(f"{'rows':>11}  {'variant':<10} {'seconds':>8} {'rows/s':>14} {'x scipy':>8}")
    for rows in args.rows:
        references, window = _data(rows)
        timings = {
            "raymlops": min(_raymlops(references, window) for _ in range(args.repeats)),
            "report": min(_report(references, window) for _ in range(args.repeats)),
            "scipy": min(_scipy(references, window) for _ in range(args.repeats)),
        }
        evidently = _evidently(references, window)
        if evidently is not None:
            timings["evidently"] = evidently
        for variant, seconds in timings.items():
            speedup = timings["scipy"] / seconds
            rows_out.append(
                {"rows": rows, "variant": variant, "seconds": seconds, "speedup_vs_scipy": speedup}
            )
            print(
                f"{rows:>11,}  {variant:<10} {seconds:>8.3f} "
                f"{rows * NUM_FEATURES / seconds:>14,.0f} {speedup:>8.2f}"
            )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "features": NUM_FEATURES,
                "reference_size": REFERENCE_SIZE,
                "tests": ["psi", "ks", "wasserstein"],
                "rows": rows_out,
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
