"""The registry (a real `mlflow server`) goes down under load: the endpoint keeps serving what it has.

Before the fix, the replicas' watcher read "server unreachable" as "no model
registered", dropped both models and answered 503 until the server was back.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import requests

from raymlops.config import parse_config
from raymlops.data._demo import CATEGORICAL, NUMERIC
from tests.helpers.frozen import run_copy
from tests.helpers.head import free_port
from tests.helpers.servers import start_mlflow_server, stop_group

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("ray_cluster")]

OUTAGE_S = 12.0


def _registry_errors(model: str) -> float:
    text = requests.get(
        f"http://127.0.0.1:{os.environ['RAYMLOPS_TEST_METRICS_PORT']}/metrics", timeout=10
    ).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ray_raymlops_registry_errors_total") and f'model="{model}"' in line
    )


def test_the_endpoint_serves_through_a_registry_outage_and_follows_it_after(trained_pair, tmp_path, figures):
    from ray import serve

    from raymlops import registry
    from raymlops import serve as rserve

    port = free_port()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    server = start_mlflow_server(tmp_path, port, str(artifacts))
    raw = trained_pair.raw(
        "outage",
        serving={"port": free_port(), "num_replicas": 1, "watch_interval_s": 0.5},
        monitoring={"enabled": False},
    )
    raw["storage"] = {"home": str(tmp_path / "home"), "mlflow_tracking_uri": f"http://127.0.0.1:{port}"}
    cfg = parse_config(raw)
    first = registry.register(run_copy(trained_pair.good, cfg), cfg)
    registry.promote(cfg, f"outage/{first.version}", reason="first", force=True)
    endpoint = rserve.deploy(cfg)
    rows = trained_pair.prepared.test.to_pandas().dropna().head(3)
    records = json.loads(rows[[*NUMERIC, *CATEGORICAL]].to_json(orient="records"))

    versions: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                answer = session.post(f"{endpoint.url}/predict", json={"records": records}, timeout=30)
            except requests.RequestException as e:
                failures.append(f"{type(e).__name__}: {e}")
                continue
            if answer.status_code != 200:
                failures.append(f"{answer.status_code}: {answer.text[:200]}")
            else:
                versions.append(int(answer.json()["model_version"]))
            time.sleep(0.02)

    clients = [threading.Thread(target=load) for _ in range(2)]
    for client in clients:
        client.start()
    restarted = None
    try:
        time.sleep(2)
        before = len(versions)
        stop_group(server)  # the registry is gone
        time.sleep(OUTAGE_S)
        during = versions[before:]
        errors_during = _registry_errors("outage")
        restarted = start_mlflow_server(tmp_path, port, str(artifacts))
        second = registry.register(run_copy(trained_pair.poor, cfg), cfg)
        registry.promote(cfg, f"outage/{second.version}", reason="after the outage", force=True)
        promoted_at = time.monotonic()
        deadline = promoted_at + 60
        while time.monotonic() < deadline and (not versions or versions[-1] != second.version):
            time.sleep(0.25)
        switched_s = time.monotonic() - promoted_at
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
        rserve.shutdown(cfg)
        serve.shutdown()  # Serve itself too: the next deploy on this shared cluster picks its own port
        stop_group(restarted or server)
    deadline = time.monotonic() + 60
    while errors_during == 0 and time.monotonic() < deadline:  # Ray exports metrics every few seconds
        errors_during = _registry_errors("outage")
        time.sleep(2)
    figures.update(
        outage_s=OUTAGE_S,
        requests_during_outage=len(during),
        failed_requests=len(failures),
        registry_errors_counted=errors_during,
        new_champion_served_after_s=round(switched_s, 1),
    )
    assert not failures, failures[:5]
    assert len(during) > 20 and set(during) == {first.version}  # served throughout, unchanged
    assert errors_during > 0  # the outage was seen, and counted
    assert versions[-1] == second.version, versions[-10:]  # a promotion after the restart reaches it
