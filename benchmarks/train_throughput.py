"""Training throughput: the Ray Train loop (1 and 2 workers) side by side with a plain PyTorch loop.

The same data, model, batch size and optimizer for all: demo churn rows
ingested and prepared by raymlops (the fitted preprocessor's features), the
MLP of `model`, AdamW with the config's learning rate and weight decay, and the
epoch's training loss summed as it goes (raymlops reports it; so would any
loop). The plain loop runs in this process on one torch thread (a Ray Train
worker with 0.5 CPU gets one too), right before and right after each long fit,
and each fit's ratio is against the mean of those two runs: the machine's speed
drifts by ~10 % within minutes, more than the gap being measured. From the
long fit, in MLflow: the median
training pass (``epoch_train_s``, what "per step" compares against the plain
loop) and the median gap between two epochs' ends (the pass plus the
validation pass, MLflow logging and the checkpoint). What is left of a short
fit after one such epoch is the fixed start-up (controller and worker
processes, process group, dataset setup, MLflow run, result); the median of
``--repeats`` short fits is reported, each figure in the JSON. The MLflow store
is created before any fit (once per storage home, ~1.5 s, not per fit). Early
stopping is off.

    python benchmarks/train_throughput.py                  # 100k rows, 2–3.5 min
    python benchmarks/train_throughput.py --rows 20000

Results print as a table and go to ``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("results") / "train_throughput.json"


def _plain_inputs(prepared, config) -> tuple:
    """The training split's encoded rows as two tensors, as a plain loop would hold them."""
    import torch

    from raymlops.train import model_inputs

    rows = model_inputs(prepared.train, prepared, config.model.task).to_pandas()
    x = torch.tensor(np.stack(rows["x"].to_numpy()), dtype=torch.float32)
    y = torch.tensor(rows["y"].to_numpy(), dtype=torch.float32)
    return x, y


def _plain_torch(x, y, config, epochs: int) -> float:
    """Seconds per epoch of a plain PyTorch loop over the same encoded rows (after one warm-up epoch)."""
    import torch

    from raymlops.train import build_model

    torch.set_num_threads(1)
    model = build_model(x.shape[1], 1, tuple(config.model.hidden_sizes), config.model.dropout, None)
    training = config.training
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch = training.batch_size
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(len(x))
        model.train()
        total = 0.0
        for i in range(0, len(x), batch):
            index = order[i : i + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(x[index]).squeeze(-1), y[index])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def _ray_train(prepared, config, workers: int, epochs: int) -> tuple[float, float, float]:
    """Seconds of the whole fit, and two medians over its epochs from MLflow.

    ``epoch_train_s`` (the training pass, logged by rank 0) and the gap between two
    epochs' ends (the timestamps of their metrics: the training pass, the
    validation pass, MLflow and the checkpoint). Figures from inside one run:
    the difference of two fits' totals carried both fits' start-up noise
    (several seconds on 2 cores).
    """
    import mlflow

    from raymlops import train

    training = config.training.model_copy(
        update={"num_workers": workers, "epochs": epochs, "early_stopping_patience": 0}
    )
    start = time.perf_counter()
    result = train.run(prepared, config.model_copy(update={"training": training}))
    seconds = time.perf_counter() - start
    client = mlflow.MlflowClient(config.mlflow_tracking_uri)
    stamps = sorted(m.timestamp for m in client.get_metric_history(result.run_id, "val_loss"))
    gap_s = float(np.median(np.diff(stamps) / 1000.0)) if len(stamps) > 1 else float("nan")
    passes = [m.value for m in client.get_metric_history(result.run_id, "epoch_train_s")]
    return seconds, float(np.median(passes[1:] or passes)), gap_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--short", type=int, default=1, help="epochs of the short fit")
    parser.add_argument("--long", type=int, default=4, help="epochs of the long fit")
    parser.add_argument("--repeats", type=int, default=3, help="short fits per worker count")
    args = parser.parse_args()
    os.environ.setdefault("RAYMLOPS_HOME", tempfile.mkdtemp(prefix="rmo-bench-train-"))
    import pyarrow.parquet as pq

    from raymlops import data, runtime
    from raymlops._internal import tracking
    from raymlops.config import load_config
    from raymlops.pipeline import packaged_demo_config

    config = load_config(packaged_demo_config())
    source = Path(os.environ["RAYMLOPS_HOME"]) / "rows.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data.generate_demo_data(args.rows, seed=7), source)
    out = []
    with runtime.session(config, log_to_driver=False):
        prepared = data.prepare(data.ingest(str(source), config, mode="overwrite"), config)
        # creates the store: once per home, not a fit's start-up
        tracking.experiment_id(config, runtime.mlflow_client(config))
        num_train = prepared.split_num_rows[0]
        x, y = _plain_inputs(prepared, config)
        plains: list[float] = []
        for workers in (1, 2):
            # the plain loop right before and after each long fit, and the fit's ratio against those
            # two: this machine's speed drifts by ~10 % within minutes, more than the gap measured
            plains.append(_plain_torch(x, y, config, args.long))
            long, epoch_s, gap_s = _ray_train(prepared, config, workers, args.long)
            plains.append(_plain_torch(x, y, config, args.long))
            shorts = [_ray_train(prepared, config, workers, args.short)[0] for _ in range(args.repeats)]
            startups = [short - args.short * gap_s for short in shorts]
            out.append(
                {
                    "variant": "Ray Train",
                    "workers": workers,
                    "epoch_s": epoch_s,
                    "epoch_gap_s": gap_s,
                    "plain_around_s": plains[-2:],
                    "ratio_vs_plain": float(np.mean(plains[-2:])) / epoch_s,
                    "startup_s": float(np.median(startups)),
                    "startup_each_s": startups,
                    "fit_s": {str(args.short): shorts, str(args.long): long},
                }
            )
        plain_s = float(np.median(plains))
        out.insert(
            0,
            {
                "variant": "plain PyTorch",
                "workers": 1,
                "epoch_s": plain_s,
                "epoch_gap_s": plain_s,
                "ratio_vs_plain": 1.0,
                "startup_s": 0.0,
                "each_s": plains,
            },
        )
    training = config.training
    print(f"{num_train:,} training rows, batch {training.batch_size}, MLP {config.model.hidden_sizes}")
    header = ("variant", "workers", "train pass s", "samples/s", "x plain*", "epoch s", "start-up s")
    print(
        f"{header[0]:<14} {header[1]:>7} {header[2]:>12} {header[3]:>10} {header[4]:>8} {header[5]:>8} "
        f"{header[6]:>10}"
    )
    for row in out:
        row["samples_per_s"] = num_train / row["epoch_s"]
        print(
            f"{row['variant']:<14} {row['workers']:>7} {row['epoch_s']:>12.2f} "
            f"{row['samples_per_s']:>10,.0f} {row['ratio_vs_plain']:>8.2f} {row['epoch_gap_s']:>8.2f} "
            f"{row['startup_s']:>10.1f}"
        )
    print("* against the plain loop's runs just before and after that row's long fit (the median: plain)")
    print(f"plain loop, each run: {', '.join(f'{p:.3f}' for p in plains)} s per pass")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "rows": args.rows,
                "training_rows": num_train,
                "epochs": [args.short, args.long],
                "results": out,
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
