"""The closed loop on a real public dataset: scikit-learn's handwritten digits, split on one pixel.

Run as a script (``python -m tests.helpers.real_loop HOME``) by ``tests/e2e/test_real_data_loop.py``:
it needs an embedded head of its own (with the Jobs API), which a pytest
process that already joined the shared test cluster cannot start. Prints one
JSON line with what happened.

Covariate shift by splitting on a feature: the rows whose ``pixel_4_2`` is at
most its median are the "past" (ingested, trained on, and the reference
traffic); the others are the "present" that production traffic moves to.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

SPLIT_FEATURE = "pixel_4_2"


def digits_halves() -> tuple[pa.Table, pa.Table]:
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame
    frame["target"] = frame["target"].astype("int64")
    frame[frame.columns[:-1]] = frame[frame.columns[:-1]].astype("float64")
    past = frame[frame[SPLIT_FEATURE] <= frame[SPLIT_FEATURE].median()]
    present = frame[frame[SPLIT_FEATURE] > frame[SPLIT_FEATURE].median()]
    return pa.Table.from_pandas(past, preserve_index=False), pa.Table.from_pandas(
        present, preserve_index=False
    )


def raw_config(home: Path, features: list[str]) -> dict[str, Any]:
    return {
        "name": "digits",
        "storage": {"home": str(home)},
        "runtime": {"num_cpus": 4},
        "data": {
            "schema": {
                "features": [{"name": f, "kind": "numeric", "min": 0, "max": 16} for f in features],
                "label": {"name": "target", "dtype": "int64", "classes": list(range(10))},
            }
        },
        "model": {"task": "multiclass", "hidden_sizes": [64]},
        "training": {
            "num_workers": 1,
            "cpus_per_worker": 0.5,
            "epochs": 25,
            "learning_rate": 0.01,
            "seed": 0,
        },
        "serving": {"num_replicas": 1, "num_cpus_per_replica": 0.25},
        "monitoring": {
            "check_interval_s": 1,
            "window_size": 150,
            "min_window_size": 100,
            "drift_share": 0.3,
            "consecutive_windows": 2,
        },
        "retraining": {"cooldown_s": 600, "min_labelled_rows": 200, "canary_duration_s": 1},
        # the loop's traffic during the retrain is a few requests a second: a short judged canary
        "canary": {"steps": [0.5], "min_requests": 10, "max_duration_s": 120},
    }


def main(home: Path) -> dict[str, Any]:
    from raymlops import data, runtime
    from raymlops.config import parse_config
    from raymlops.pipeline._loop import ClosedLoop
    from raymlops.pipeline._stages import gate_and_promote, train_and_register

    past, present = digits_halves()
    features = [c for c in past.column_names if c != "target"]
    config = parse_config(raw_config(home, features))
    source = home.parent / "digits_past.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(past, source)
    rng = np.random.default_rng(0)

    def draw(table: pa.Table) -> Any:
        return lambda num_rows: table.take(rng.integers(0, table.num_rows, num_rows))

    lines: list[str] = []
    with runtime.session(config) as rt:
        version = data.ingest(str(source), config, mode="overwrite")
        trained = train_and_register(config, prepared=data.prepare(version, config), say=lines.append)
        first = gate_and_promote(config, f"digits/{trained.model_version.version}", reason="first model")
        loop = ClosedLoop(
            config, rt.dashboard_url, lines.append, reference_rows=draw(past), shifted_rows=draw(present)
        )
        loop.start()
        stationary = loop.stationary()
        drift = loop.drift()
        retrain = loop.retrain()
        status = loop.status()
        loop.stop()
    return {
        "first_promoted": first.promoted,
        "first_summary": first.report.summary() if first.report else "",
        "stationary": stationary,
        "drift": drift,
        "retrain": retrain,
        "served": loop.served,
        "job": status["jobs"][-1] if status["jobs"] else None,
        "num_triggers": status["num_triggers"],
        "num_windows": status["num_windows"],
        "lines": lines[-40:],
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), default=str))
