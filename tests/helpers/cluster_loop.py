"""The serving half of the two-node test, run as a driver attached to that cluster (RAY_ADDRESS).

A pytest process already holds the suite's shared local Ray, and one process
attaches to one cluster, so this runs in its own process and prints one JSON
line: where the replicas and training workers ran, the loop's three phases,
a champion load in a task pinned to node 2, and eight processes on both nodes
promoting one model at once.

    python -m tests.helpers.cluster_loop CONFIG.json DASHBOARD_URL
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import sys
from typing import Any


def _node_of(resource: str) -> str:
    import ray

    (node,) = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and resource in n.get("Resources", {})]
    return str(node)


def _actor_nodes(dashboard_url: str, class_name: str) -> list[str]:
    from ray.util.state import list_actors

    actors = list_actors(address=dashboard_url, filters=[("class_name", "=", class_name)], limit=1000)
    return [a.node_id for a in actors if a.node_id]


def _load_champion_here(config_json: str) -> dict[str, Any]:
    """In a task pinned to node 2: the champion loads from the registry and predicts."""
    import mlflow
    import ray

    from raymlops.config import ProjectConfig
    from raymlops.data import generate_demo_data

    config = ProjectConfig.model_validate_json(config_json)
    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    mlflow.set_registry_uri(config.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{config.name}@champion")
    rows = generate_demo_data(5, seed=7).to_pandas()
    predictions = model.predict(rows)
    return {"node": ray.get_runtime_context().get_node_id(), "num_predictions": len(predictions)}


def _promote_once(config_json: str, result_blob: bytes, worker: int) -> dict[str, Any]:
    """One of eight processes: register a version of the same run and force it to champion."""
    import ray

    from raymlops import registry
    from raymlops.config import ProjectConfig

    config = ProjectConfig.model_validate_json(config_json)
    result = pickle.loads(result_blob)
    version = registry.register(result, config)
    registry.promote(config, f"{config.name}/{version.version}", reason=f"worker {worker}", force=True)
    return {"version": version.version, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}


def _eight_promotions(config: Any) -> dict[str, Any]:
    import mlflow
    import ray

    from raymlops import data, registry, train
    from tests.helpers.frozen import frozen_result

    champion = registry.champion(config)
    assert champion is not None
    client = mlflow.MlflowClient(config.mlflow_tracking_uri)
    run = client.get_run(champion.run_id)
    version = data.get_version(config.table_uri, int(run.data.tags["data.version"]))
    result = train.result_from_checkpoint(
        run_id=champion.run_id,
        run_name=run.data.tags.get("ray.train.run_name", ""),
        checkpoint_path=run.data.tags["ray.train.checkpoint_path"],  # in the bucket
        prepared=data.prepare(version, config),
        hyperparameters=json.loads(run.data.tags["raymlops.hyperparameters"]),
    )
    blob = pickle.dumps(frozen_result(result))
    before = len([m for m in registry.history(config) if m.alias == registry.CHAMPION])
    task = ray.remote(num_cpus=0, max_retries=0)(_promote_once)
    config_json = config.model_dump_json(by_alias=True)
    refs = [
        task.options(resources={("head" if w % 2 else "node2"): 0.01}).remote(config_json, blob, w)
        for w in range(8)
    ]
    done = ray.get(refs, timeout=600)
    moves = [m for m in registry.history(config) if m.alias == registry.CHAMPION][before:]
    broken = [
        (a.render(), b.render()) for a, b in itertools.pairwise(moves) if b.from_version != a.to_version
    ]
    final = registry.champion(config)
    return {
        "workers": done,
        "num_moves": len(moves),
        "broken_links": broken,
        "reasons": sorted(m.reason for m in moves),
        "champion_is_last_move": final is not None and moves and final.version == moves[-1].to_version,
    }


def main(config_path: str, dashboard_url: str) -> dict[str, Any]:
    import ray

    from raymlops import runtime
    from raymlops.config import ProjectConfig
    from raymlops.pipeline._loop import ClosedLoop

    with open(config_path) as f:
        config = ProjectConfig.model_validate_json(f.read())
    lines: list[str] = []
    out: dict[str, Any] = {"lines": lines}
    with runtime.session(config):
        nodes = {"head": _node_of("head"), "node2": _node_of("node2")}
        out["nodes"] = nodes
        out["train_worker_nodes"] = sorted(set(_actor_nodes(dashboard_url, "RayTrainWorker")))
        loop = ClosedLoop(config, dashboard_url, lines.append)
        loop.start()
        out["replica_nodes"] = sorted(
            set(_actor_nodes(dashboard_url, f"ServeReplica:{config.name}:ModelServer"))
        )
        out["stationary"] = loop.stationary()
        out["drift"] = loop.drift()
        out["retrain"] = loop.retrain()
        out["job"] = vars(loop.job) if loop.job else None
        out["served"] = loop.served
        out["num_requests"] = loop.traffic.num_requests if loop.traffic else 0
        out["failures"] = loop.traffic.failures[:5] if loop.traffic else []
        out["retrain_worker_nodes"] = sorted(set(_actor_nodes(dashboard_url, "RayTrainWorker")))
        pinned = ray.remote(num_cpus=0, max_retries=0)(_load_champion_here)
        out["node2_load"] = ray.get(
            pinned.options(resources={"node2": 0.01}).remote(config.model_dump_json(by_alias=True)),
            timeout=300,
        )
        loop.stop()  # the monitor flushes its state to the bucket
        out["promotions"] = _eight_promotions(config)
    return out


if __name__ == "__main__":
    result = main(sys.argv[1], sys.argv[2])
    print(json.dumps(result, default=str))
