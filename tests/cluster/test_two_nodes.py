"""The whole loop on a real two-node Ray cluster, every artifact in an S3 bucket, MLflow as a server.

Node 2 runs in its own mount namespace (``tests/helpers/two_nodes.py``): the
head's local folders are not node 2's, exactly as on two machines. The tests
run in file order on one cluster: the refusals first (nothing may be written),
then the loop (a Ray job; an endpoint with a replica on node 2; traffic; the
monitor's retrain job), eight processes promoting at once, and the preflight,
passing and then with node 2 cut off from the bucket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import demo_raw_config
from tests.helpers.cli import run_cli
from tests.helpers.head import free_port
from tests.helpers.two_nodes import TwoNodes, two_node_cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
HOME_PREFIX = "home"


@pytest.fixture(scope="module")
def cluster() -> Any:
    if os.geteuid() != 0:
        pytest.skip("node 2's own mount namespace (unshare -m, mount --bind) needs root")
    with two_node_cluster() as nodes:
        yield nodes


def _raw(cluster: TwoNodes, **storage: Any) -> dict[str, Any]:
    raw = demo_raw_config(
        cluster.local_home,
        # 4 CPUs per node: two workers of 3 CPUs cannot share one, so each runs on its own node
        training={"num_workers": 2, "cpus_per_worker": 3, "epochs": 4, "max_failures": 0},
        serving={
            "num_replicas": 2,
            "num_cpus_per_replica": 0.25,
            "proxy_location": "HeadOnly",  # two nodes on one machine cannot both listen on the port
            "ingress": "python",
            "port": free_port(),
        },
        monitoring={
            "check_interval_s": 1,
            "window_size": 300,
            "min_window_size": 200,
            "consecutive_windows": 2,
        },
        retraining={"cooldown_s": 600, "min_labelled_rows": 200, "canary_duration_s": 1},
        canary={"steps": [0.5], "min_requests": 10, "max_duration_s": 120},  # the loop's few requests/s
    )
    raw["storage"] = {
        "home": f"s3://{cluster.bucket}/{HOME_PREFIX}",
        "mlflow_tracking_uri": cluster.mlflow_uri,
        **storage,
    }
    return raw


def _write_config(folder: Path, raw: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "raymlops.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _cli(args: list[str], env: dict[str, str], cwd: Path, timeout_s: int = 600) -> Any:
    return run_cli(args, cwd, env, timeout_s=timeout_s)


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _demo_csv(path: Path, num_rows: int, seed: int) -> Path:
    import pyarrow.csv as pacsv

    from raymlops.data import generate_demo_data

    pacsv.write_csv(generate_demo_data(num_rows, seed=seed), path)
    return path


def test_a_local_home_on_two_nodes_is_refused_before_anything_is_written(cluster, tmp_path):
    raw = _raw(cluster)
    raw["storage"] = {"home": str(cluster.local_home)}  # a folder on the head only, SQLite beside it
    config = _write_config(tmp_path, raw)
    _demo_csv(tmp_path / "customers.csv", 200, seed=1)
    run = _cli(["data", "ingest", "customers.csv", "-c", str(config)], cluster.env(), tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert f"storage.home {cluster.local_home} is a folder on this machine only" in output, output
    assert "s3://" in output and "Traceback" not in output
    assert _files_under(cluster.local_home) == [] and _files_under(cluster.node2_view) == []


def test_an_s3_home_without_credentials_names_the_uri_and_the_variables(cluster, tmp_path):
    config = _write_config(tmp_path, _raw(cluster))
    _demo_csv(tmp_path / "customers.csv", 200, seed=1)
    env = {k: v for k, v in cluster.env().items() if not k.startswith("AWS_ACCESS") and "SECRET" not in k}
    env["HOME"] = str(tmp_path)  # no ~/.aws/credentials either
    run = _cli(["data", "ingest", "customers.csv", "-c", str(config)], env, tmp_path, timeout_s=120)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert f"s3://{cluster.bucket}/{HOME_PREFIX}" in output and "AWS_ACCESS_KEY_ID" in output, output
    assert "Traceback" not in output
    assert not [k for k in cluster.bucket_keys() if k.startswith(f"{HOME_PREFIX}/data")]


def test_the_whole_loop_runs_on_two_nodes_with_every_artifact_in_the_bucket(cluster, tmp_path):
    raw = _raw(cluster)
    config = _write_config(tmp_path, raw)
    env = cluster.env()

    # a relative local path is read where the user is, not inside a worker's folder on node 2
    _demo_csv(tmp_path / "customers.csv", 1500, seed=1)
    ingest = _cli(["data", "ingest", "customers.csv", "-c", str(config)], env, tmp_path)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "wrote version 0 of s3://" in ingest.stdout + ingest.stderr

    # the pipeline as a Ray job, its source in the bucket
    source = _demo_csv(tmp_path / "more.csv", 1500, seed=2)
    cluster.s3().upload_file(str(source), cluster.bucket, "sources/more.csv")
    submission = "raymlops-two-node-pipeline"
    jobs_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}  # it would override --address
    job = subprocess.run(
        [
            "ray",
            "job",
            "submit",
            "--address",
            cluster.dashboard_url,
            "--submission-id",
            submission,
            "--working-dir",
            str(REPO / "jobs"),
            "--runtime-env-json",
            json.dumps({"env_vars": {"RAYMLOPS_RAY_ADDRESS": cluster.gcs_address}}),
            "--",
            "python",
            "pipeline.py",
            "--config",
            str(config),
            "--source",
            f"s3://{cluster.bucket}/sources/more.csv",
            "--no-deploy",
        ],
        env=jobs_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    status = subprocess.run(
        ["ray", "job", "status", "--address", cluster.dashboard_url, submission],
        env=jobs_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"Job '{submission}' succeeded" in status.stdout, job.stdout[-4000:] + job.stderr[-4000:]
    assert job.returncode == 0 and '"promoted": true' in job.stdout, job.stdout[-3000:]

    # serving, traffic and the monitor's retrain, driven from a process attached to the cluster
    config_json = tmp_path / "config.json"
    from raymlops.config import parse_config

    config_json.write_text(parse_config(raw).model_dump_json(by_alias=True))
    loop = subprocess.run(
        [sys.executable, "-m", "tests.helpers.cluster_loop", str(config_json), cluster.dashboard_url],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert loop.returncode == 0, loop.stdout[-3000:] + loop.stderr[-6000:]
    result = json.loads(next(x for x in reversed(loop.stdout.splitlines()) if x.startswith('{"lines"')))
    context = "\n".join(result["lines"])
    nodes = result["nodes"]
    # the first training's two workers ran one on each node
    assert set(result["train_worker_nodes"]) == {nodes["head"], nodes["node2"]}, result
    assert nodes["node2"] in result["replica_nodes"], result["replica_nodes"]
    ok, detail = result["stationary"]
    assert ok, detail + context
    ok, detail = result["drift"]
    assert ok and "triggered" in detail, detail + context
    ok, detail = result["retrain"]
    assert ok, detail + context
    assert result["job"]["outcome"] == "promoted" and not result["failures"], result["job"]
    assert len(result["served"]) == 2 and result["served"][-1] == result["job"]["model_version"]
    assert result["node2_load"]["node"] == nodes["node2"] and result["node2_load"]["num_predictions"] == 5

    promotions = result["promotions"]
    assert promotions["num_moves"] == 8 and not promotions["broken_links"], promotions
    assert promotions["reasons"] == sorted(f"worker {w}" for w in range(8))
    assert promotions["champion_is_last_move"]
    assert {w["node"] for w in promotions["workers"]} == {nodes["head"], nodes["node2"]}
    assert len({(w["node"], w["pid"]) for w in promotions["workers"]}) == 8  # eight processes

    # a plain process outside Ray loads the champion from the server and the bucket
    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mlflow, sys; from raymlops.data import generate_demo_data; "
            f"mlflow.set_tracking_uri({cluster.mlflow_uri!r}); "
            "m = mlflow.pyfunc.load_model('models:/churn@champion'); "
            "print(len(m.predict(generate_demo_data(4, seed=3).to_pandas())))",
        ],
        env={k: v for k, v in env.items() if k != "RAY_ADDRESS"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plain.returncode == 0 and plain.stdout.strip().endswith("4"), plain.stderr[-3000:]

    keys = cluster.bucket_keys()
    for prefix in (
        f"{HOME_PREFIX}/data/training/_delta_log/",
        f"{HOME_PREFIX}/serving/churn_inference_log/_delta_log/",
        f"{HOME_PREFIX}/serving/churn_feedback/_delta_log/",
        f"{HOME_PREFIX}/registry/alias_history/_delta_log/",
        f"{HOME_PREFIX}/train/",
        f"{HOME_PREFIX}/monitor/churn/state.json",
        f"{HOME_PREFIX}/monitor/churn/windows.jsonl",
        f"{HOME_PREFIX}/monitor/churn/jobs/",
        f"{HOME_PREFIX}/monitor/churn/retrain/",
        "mlartifacts/",
    ):
        assert any(k.startswith(prefix) for k in keys), (prefix, sorted(keys)[:50])
    assert any(k.endswith("checkpoint.pt") or "/checkpoint_" in k for k in keys), (
        "no checkpoints in the bucket"
    )
    # nothing under any node's local home; node-local scratch holds only the replicas' journals
    assert _files_under(cluster.local_home) == [] and _files_under(cluster.node2_view) == []
    for name, cache in cluster.caches.items():
        stray = [f for f in _files_under(cache) if "_journal/" not in f and not f.endswith("cluster.json")]
        assert stray == [], (name, stray)
    assert not (tmp_path / ".raymlops").exists() and not (REPO / "jobs" / ".raymlops").exists()


def test_cluster_check_passes_then_names_node_2_cut_off_from_the_bucket(cluster, tmp_path):
    config = _write_config(tmp_path, _raw(cluster))
    env = cluster.env()
    passed = _cli(["cluster", "check", "-c", str(config)], env, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.count(" ok ") >= 2 and "all nodes passed" in passed.stdout, passed.stdout
    cluster.cut_node2_from_s3()
    try:
        failed = _cli(["cluster", "check", "-c", str(config), "--timeout-s", "240"], env, tmp_path)
    finally:
        cluster.heal_node2()
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output
    node2 = cluster.node_ids()["node2"][:8]
    failing = [line for line in failed.stdout.splitlines() if "storage:" in line]
    assert len(failing) == 1 and node2 in failing[0], output  # node 2, and only node 2, named
    assert "1 node(s) failed" in failed.stdout and "Traceback" not in output
