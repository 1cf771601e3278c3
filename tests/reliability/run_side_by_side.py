"""Two `raymlops demo` runs at the same time on one machine, each with its own home and ports.

Run by hand (about 10 minutes on 2 cores, too long for CI), from the project folder:

    python tests/reliability/run_side_by_side.py [--rows 1000] [--with-other-ray]

``--with-other-ray`` also keeps a plain `ray start --head` up meanwhile (stopped
by its process ids afterwards). Prints one line per demo (exit code, seconds,
its summary's retrain line) and exits 0 only when every demo exited 0. The
latest results are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _config(folder: Path, index: int) -> Path:
    from raymlops.pipeline import packaged_demo_config

    raw = yaml.safe_load(packaged_demo_config().read_text())
    offset = 100 * (index + 1)
    raw["runtime"].update(dashboard_port=8265 + offset, metrics_export_port=8080 + offset)
    raw["serving"].update(
        port=8000 + offset, haproxy_stats_port=8404 + offset, haproxy_metrics_port=9101 + offset
    )
    path = folder / f"demo-{index}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2, help="demos at the same time")
    parser.add_argument("--with-other-ray", action="store_true", help="a `ray start --head` up meanwhile")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rmo-side-"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYMLOPS_HOME")}
    other = None
    if args.with_other_ray:
        from tests.helpers.head import foreign_head

        other = foreign_head()
        print(f"another Ray up at {next(other)}", flush=True)
    started = time.monotonic()
    runs = []
    for i in range(args.runs):
        out = (folder / f"demo-{i}.out").open("w")
        runs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "raymlops.cli",
                        "demo",
                        "--rows",
                        str(args.rows),
                        "--config",
                        str(_config(folder, i)),
                    ],
                    cwd=folder,
                    env={**env, "RAYMLOPS_HOME": str(folder / f"home-{i}")},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                ),
                out,
            )
        )
    failed = 0
    for i, (process, out) in enumerate(runs):
        rc = process.wait(timeout=1800)
        out.close()
        text = (folder / f"demo-{i}.out").read_text()
        retrain = next((line.strip() for line in text.splitlines() if " retrain: " in line), "-")
        print(f"demo {i}: exit {rc} after {time.monotonic() - started:.0f} s; {retrain}", flush=True)
        failed += rc != 0
    if other is not None:
        next(other, None)  # stops it by its process ids
    print(f"outputs under {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
