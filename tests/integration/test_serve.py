"""The Ray Serve endpoint over real HTTP: parity with pyfunc, bad requests, batching,
autoscaling, promotion under load, canary, shadow, the inference log, and the drift
monitor actor killed under traffic.

One module-scoped deployment (a good champion and a poor challenger) on the
shared local Ray; Serve is shut down at the end of the module.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import time
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from deltalake import DeltaTable

from raymlops import pipeline, registry
from raymlops import serve as rserve
from raymlops.config import parse_config
from raymlops.data._demo import CATEGORICAL, NUMERIC
from tests.helpers.records import GOOD

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]

FEATURES = [*NUMERIC, *CATEGORICAL]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint(trained_pair):
    from ray import serve

    raw = trained_pair.raw(
        "serving",
        serving={
            "port": _free_port(),
            "num_replicas": "auto",
            "min_replicas": 1,
            "max_replicas": 2,
            "target_ongoing_requests": 2,
            "upscale_delay_s": 1,
            "downscale_delay_s": 600,
            "max_batch_size": 16,
            "batch_wait_timeout_s": 0.01,
            "max_rows_per_request": 50,
            "max_request_bytes": 200_000,
            "watch_interval_s": 0.5,
            "log_flush_interval_s": 0.5,
        },
        monitoring={"window_size": 200, "min_window_size": 100, "check_interval_s": 1.0},
    )
    cfg = parse_config(raw)
    good = registry.register(trained_pair.good, cfg)
    poor = registry.register(trained_pair.poor, cfg)
    assert pipeline.gate_and_promote(cfg, f"serving/{good.version}", reason="first").promoted
    holdout = trained_pair.prepared.test.to_pandas()
    ep = rserve.deploy(cfg)
    yield cfg, ep, holdout, good.version, poor.version
    serve.shutdown()


def _records(frame: pd.DataFrame, n: int, start: int = 0) -> list[dict]:
    rows = frame.iloc[start : start + n][FEATURES]
    return json.loads(rows.to_json(orient="records"))


def _wait_for(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _model(ep) -> dict:
    return requests.get(f"{ep.url}/model", timeout=10).json()


def _everywhere(ep, predicate) -> bool:
    """True when every replica agrees: /model asked often enough to reach each of them."""
    return all(predicate(_model(ep)) for _ in range(12))


def test_predictions_are_identical_to_mlflow_pyfunc(endpoint):
    cfg, ep, holdout, good, _ = endpoint
    records = _records(holdout, 40)
    response = requests.post(f"{ep.url}/predict", json={"records": records}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == str(good) and body["route"] == "champion" and body["request_id"]
    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    expected = mlflow.pyfunc.load_model("models:/serving@champion").predict(pd.DataFrame(records))
    assert body["predictions"] == expected["prediction"].tolist()
    assert body["probabilities"] == expected["probability"].tolist()


NaN_BODY = '{"records": [{"age": NaN}]}'


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/predict", {"records": [{**GOOD, "age": "forty"}]}, 422, "records[0].age"),
        ("/predict", {"records": [GOOD, {**GOOD, "age": 7}]}, 422, "records[1].age"),
        ("/predict", {"records": [{**GOOD, "discount_rate": 1.5}]}, 422, "records[0].discount_rate"),
        ("/predict", {"records": [{**GOOD, "plan": "platinum"}]}, 422, "records[0].plan"),
        ("/predict", {"records": [{**GOOD, "favourite_colour": "red"}]}, 422, "records[0].favourite_colour"),
        (
            "/predict",
            {"records": [{k: v for k, v in GOOD.items() if k != "region"}]},
            422,
            "records[0].region",
        ),
        ("/predict", {"records": [{**GOOD, "age": None}]}, 422, "records[0].age"),
        ("/predict", '{"records": [{"age": NaN, "income_k": 1}]}', 422, "records[0].age"),
        ("/predict", '{"records": [{"age": Infinity}]}', 422, "records[0].age"),
        ("/predict", {"records": []}, 422, "records"),
        ("/predict", {"records": {"age": 3}}, 422, "records"),
        ("/predict", {"rows": [GOOD]}, 422, "rows"),
        ("/predict", "{not json", 422, "body"),
        ("/predict", [GOOD], 422, "body"),
        ("/predict", {"records": [GOOD] * 51}, 413, "records"),
        ("/predict", {"records": [GOOD], "pad": "x" * 250_000}, 413, "body"),
        ("/feedback", {"request_id": "r1", "labels": [3]}, 422, "labels[0]"),
        ("/feedback", {"labels": [1]}, 422, "request_id"),
        ("/feedback", {"request_id": "r1", "labels": []}, 422, "labels"),
        ("/predict", {"records": [{**GOOD, "event_time": "yesterday"}]}, 422, "records[0].event_time"),
        ("/predict", {"records": [{**GOOD, "churned": 1}]}, 422, "records[0].churned"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(endpoint, path, body, status, field):
    _, ep, _, _, _ = endpoint
    payload = body if isinstance(body, str) else json.dumps(body)
    response = requests.post(
        f"{ep.url}{path}", data=payload, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == status, response.text
    problems = response.json()["problems"]
    assert field in [p["field"] for p in problems], problems
    assert all(p["reason"] for p in problems)


def test_concurrent_load_is_batched_and_scales_out(endpoint):
    import threading

    from ray import serve

    cfg, ep, holdout, _, _ = endpoint
    records = _records(holdout, 5)
    stop = threading.Event()

    def worker() -> list[int]:
        session = requests.Session()
        statuses = []
        while not stop.is_set():
            statuses.append(
                session.post(f"{ep.url}/predict", json={"records": records}, timeout=60).status_code
            )
        return statuses

    replicas_seen = []
    with cf.ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(worker) for _ in range(32)]
        started = time.monotonic()
        while time.monotonic() - started < 90:
            state = serve.status().applications["serving"].deployments["ModelServer"]
            replicas_seen.append(
                sum(n for s, n in state.replica_states.items() if str(s).endswith("RUNNING"))
            )
            if max(replicas_seen) > cfg.serving.min_replicas and time.monotonic() - started > 5:
                break
            time.sleep(0.5)
        stop.set()
        statuses = [status for f in futures for status in f.result()]
    assert len(statuses) >= 500 and statuses.count(200) == len(statuses)
    assert max(replicas_seen) > cfg.serving.min_replicas, replicas_seen
    seen = [requests.get(f"{ep.url}/healthz", timeout=10).json()["replica"] for _ in range(10)]
    assert max(r["max_batch_size_seen"] for r in seen) > 1, seen


def test_promotion_under_load_switches_versions_with_no_failed_request(endpoint):
    cfg, ep, holdout, good, poor = endpoint
    records = _records(holdout, 3)
    stop = time.monotonic() + 600

    def load(worker: int) -> list[tuple[float, int, str | None, str | None]]:
        out = []
        session = requests.Session()
        for i in range(250):
            if time.monotonic() > stop:
                break
            rid = f"promo-{worker}-{i}"
            r = session.post(f"{ep.url}/predict", json={"records": records, "request_id": rid}, timeout=60)
            version = r.json().get("model_version") if r.status_code == 200 else None
            out.append((time.monotonic(), r.status_code, version, rid))
        return out

    with cf.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(load, w) for w in range(8)]
        time.sleep(3)
        registry.promote(cfg, f"serving/{poor}", reason="swap under load", force=True)
        results = [row for f in futures for row in f.result()]
    registry.rollback(cfg, "serving", reason="restore the good model")
    assert len(results) == 2000
    assert [status for _, status, _, _ in results].count(200) == len(results)
    versions = [v for _, _, v, _ in sorted(results)]
    assert versions[0] == str(good) and versions[-1] == str(poor)
    assert set(versions) == {str(good), str(poor)}
    _wait_for(lambda: _everywhere(ep, lambda m: m["champion"]["version"] == good), what="the rollback")

    ok_ids = {rid for _, status, _, rid in results if status == 200}
    _wait_for(lambda: _logged_ids(cfg) >= ok_ids, timeout_s=30, what="every answered request in the log")


def _logged_ids(cfg) -> set[str]:
    if not DeltaTable.is_deltatable(cfg.inference_log_uri):
        return set()
    table = DeltaTable(cfg.inference_log_uri).to_pyarrow_table(columns=["request_id"])
    return set(table.column("request_id").to_pylist())


def test_canary_gets_its_share_and_is_sticky_per_request_id(endpoint):
    cfg, ep, holdout, good, poor = endpoint
    registry.set_rollout(cfg, f"serving/{poor}", canary_weight=0.3, reason="canary test")
    _wait_for(lambda: _everywhere(ep, lambda m: m["canary_weight"] == 0.3), what="the canary everywhere")
    records = _records(holdout, 2)

    def one(i: int) -> tuple[str, str]:
        rid = f"canary-{uuid.uuid4().hex}"
        body = requests.post(
            f"{ep.url}/predict", json={"records": records, "request_id": rid}, timeout=60
        ).json()
        return body["route"], body["model_version"]

    with cf.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(1000)))
    share = sum(route == "canary" for route, _ in answers) / len(answers)
    assert 0.25 <= share <= 0.35, share
    assert {v for route, v in answers if route == "canary"} == {str(poor)}
    assert {v for route, v in answers if route == "champion"} == {str(good)}
    again = [
        requests.post(
            f"{ep.url}/predict", json={"records": records, "request_id": "sticky-1"}, timeout=30
        ).json()["route"]
        for _ in range(5)
    ]
    assert len(set(again)) == 1
    registry.set_rollout(cfg, None, name="serving", reason="canary done")
    _wait_for(lambda: _everywhere(ep, lambda m: m["challenger"] is None), what="the canary to end")


def test_shadow_answers_with_the_champion_and_records_both(endpoint):
    cfg, ep, holdout, good, poor = endpoint
    registry.set_rollout(cfg, f"serving/{poor}", shadow=True, reason="shadow test")
    _wait_for(lambda: _everywhere(ep, lambda m: m["shadow"]), what="the shadow everywhere")
    rids = []
    for i in range(30):
        rid = f"shadow-{i}-{uuid.uuid4().hex[:6]}"
        body = requests.post(
            f"{ep.url}/predict",
            json={"records": _records(holdout, 10, start=i * 10), "request_id": rid},
            timeout=30,
        ).json()
        assert body["model_version"] == str(good) and body["route"] == "champion"
        rids.append(rid)
    registry.set_rollout(cfg, None, name="serving", reason="shadow done")
    _wait_for(lambda: _everywhere(ep, lambda m: not m["shadow"]), what="the shadow to end")
    _wait_for(lambda: set(rids) <= _logged_ids(cfg), what="shadowed requests in the log")
    log = DeltaTable(cfg.inference_log_uri).to_pandas()
    shadowed = log[log["request_id"].isin(rids)]
    assert len(shadowed) == 300
    assert (shadowed["shadow_version"] == poor).all() and (shadowed["model_version"] == good).all()
    disagreement = float(np.mean(shadowed["prediction"] != shadowed["shadow_prediction"]))
    assert 0.0 < disagreement < 1.0  # a near-random model disagrees with a good one on some rows


def test_feedback_is_stored_by_request_id_and_says_what_became_of_its_prediction(endpoint):
    cfg, ep, _, _, _ = endpoint
    # a row sent as it is in the data: with its id and time columns, which are logged, not fed to the model
    timed = {**GOOD, "customer_id": "c-77", "event_time": "2026-12-06T10:00:00Z"}
    predicted = requests.post(
        f"{ep.url}/predict", json={"records": [timed, GOOD, GOOD], "request_id": "fb-1"}, timeout=30
    )
    assert predicted.status_code == 200, predicted.text
    plain = requests.post(f"{ep.url}/predict", json={"records": [GOOD]}, timeout=30).json()
    assert plain["request_id"] != "fb-1"
    response = requests.post(
        f"{ep.url}/feedback", json={"request_id": "fb-1", "labels": [1, 0, 1]}, timeout=30
    )
    assert response.status_code == 200 and response.json()["num_labels"] == 3
    assert response.json()["status"] in ("matched", "pending")
    # an id this endpoint issued is recognised by any replica
    issued = requests.post(
        f"{ep.url}/feedback", json={"request_id": plain["request_id"], "labels": [1]}, timeout=30
    )
    assert issued.status_code == 200 and issued.json()["status"] in ("matched", "pending"), issued.text
    # an id the endpoint never issued is refused, and nothing is stored for it
    unknown = requests.post(
        f"{ep.url}/feedback", json={"request_id": "never-issued-1", "labels": [1]}, timeout=30
    )
    assert unknown.status_code == 404 and unknown.json()["status"] == "unknown", unknown.text
    assert unknown.json()["num_labels"] == 0 and "request_id" in unknown.json()["error"]

    def stored() -> bool:
        if not DeltaTable.is_deltatable(cfg.feedback_uri):
            return False
        frame = DeltaTable(cfg.feedback_uri).to_pandas()
        return frame[frame["request_id"] == "fb-1"]["label"].tolist() == [1, 0, 1]

    _wait_for(stored, what="the feedback rows")
    assert "never-issued-1" not in DeltaTable(cfg.feedback_uri).to_pandas()["request_id"].tolist()

    def logged_with_its_time() -> bool:
        if not DeltaTable.is_deltatable(cfg.inference_log_uri):
            return False
        frame = DeltaTable(cfg.inference_log_uri).to_pandas()
        rows = frame[frame["request_id"] == "fb-1"].sort_values("record_index")
        return len(rows) == 3 and str(rows["event_time"].iloc[0]) == "2026-12-06 10:00:00+00:00"

    _wait_for(logged_with_its_time, what="the time column in the inference log")


def test_a_body_that_is_not_json_gets_415(endpoint):
    _, ep, _, _, _ = endpoint
    body = json.dumps({"records": [GOOD]})
    for path in ("/predict", "/feedback"):
        response = requests.post(
            f"{ep.url}{path}", data=body, headers={"content-type": "text/plain"}, timeout=30
        )
        assert response.status_code == 415, response.text
        assert response.json()["problems"][0]["field"] == "content-type"
    json_ok = requests.post(
        f"{ep.url}/predict",
        data=body,
        headers={"content-type": "application/json; charset=utf-8"},
        timeout=30,
    )
    assert json_ok.status_code == 200


def test_no_champion_gives_503_and_a_token_is_required_when_configured(endpoint, tmp_path, monkeypatch):
    cfg, _, _, _, _ = endpoint
    monkeypatch.setenv("RAYMLOPS_TEST_TOKEN", "s3cret-token")
    raw = cfg.model_dump(mode="json", by_alias=True)
    raw["name"] = "serving_empty"
    raw["serving"] = {
        **raw["serving"],
        "route_prefix": "/empty",
        "num_replicas": 1,
        "auth_token_env": "RAYMLOPS_TEST_TOKEN",
    }
    empty = parse_config(raw)
    ep = rserve.deploy(empty)
    try:
        url = f"{ep.url}/predict"
        assert requests.post(url, json={"records": [GOOD]}, timeout=30).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.post(url, json={"records": [GOOD]}, headers=wrong, timeout=30).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        response = requests.post(url, json={"records": [GOOD]}, headers=right, timeout=30)
        assert response.status_code == 503 and "no champion" in response.json()["detail"]
    finally:
        rserve.shutdown(empty)
    _assert_not_in_ray_logs("s3cret-token")


def _assert_not_in_ray_logs(secret: str) -> None:
    """No file of this Ray session (driver, replicas, proxy, controller) contains ``secret``."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    leaked = [p.name for p in logs.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked, f"the bearer token is in {leaked}"


def test_cli_canary_shadow_and_status_drive_the_running_endpoint(endpoint, tmp_path, capsys):
    import yaml

    from raymlops.cli import main

    cfg, ep, _, good, poor = endpoint
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    assert main(["canary", f"serving/{poor}", "--weight", "0.2", "--config", str(path)]) == 0
    assert "gets 20% of requests" in capsys.readouterr().out
    _wait_for(lambda: _everywhere(ep, lambda m: m["canary_weight"] == 0.2), what="the CLI canary")
    assert main(["serve", "status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"champion    version {good}" in out and "canary weight 0.20" in out
    assert main(["shadow", f"serving/{poor}", "--config", str(path)]) == 0
    _wait_for(
        lambda: _everywhere(ep, lambda m: m["shadow"] and m["canary_weight"] == 0.0), what="the CLI shadow"
    )
    assert main(["shadow", "serving", "--end", "--config", str(path)]) == 0
    _wait_for(lambda: _everywhere(ep, lambda m: m["challenger"] is None), what="the end of the shadow")
    actions = [m.action for m in registry.history(cfg, "serving") if m.alias == "challenger"]
    assert actions[-3:] == ["canary", "shadow", "end-rollout"]
    assert (
        main(["canary", f"serving/{good}", "--config", str(path)]) == 2
    )  # the champion cannot be its own canary
    assert "is the champion" in capsys.readouterr().err


def test_user_config_pins_versions_until_it_is_cleared(endpoint):
    from ray import serve

    from raymlops.serve._app import build

    cfg, ep, holdout, good, poor = endpoint
    pinned = build(cfg, user_config={"champion_version": poor})
    serve.run(pinned, name="serving", route_prefix=cfg.serving.route_prefix)
    _wait_for(lambda: _everywhere(ep, lambda m: m["champion"]["version"] == poor and m["pinned"]), what="pin")
    body = requests.post(f"{ep.url}/predict", json={"records": _records(holdout, 1)}, timeout=30).json()
    assert body["model_version"] == str(poor)
    serve.run(build(cfg, user_config={}), name="serving", route_prefix=cfg.serving.route_prefix)
    _wait_for(
        lambda: _everywhere(ep, lambda m: m["champion"]["version"] == good and not m["pinned"]), what="unpin"
    )


def test_prometheus_metrics_count_predictions_batches_and_rejections(endpoint):
    import os
    import re

    _, ep, holdout, good, _ = endpoint
    records = _records(holdout, 3)
    with cf.ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda _: requests.post(f"{ep.url}/predict", json={"records": records}, timeout=60),
                range(200),
            )
        )
    requests.post(f"{ep.url}/predict", json={"records": [{**GOOD, "age": 3}]}, timeout=30)
    url = f"http://127.0.0.1:{os.environ['RAYMLOPS_TEST_METRICS_PORT']}/metrics"

    def scraped() -> str:
        text = requests.get(url, timeout=10).text
        wanted = ("ray_raymlops_predictions_total", "ray_raymlops_batch_size_bucket", "ray_raymlops_rejected")
        return text if all(name in text for name in wanted) else ""

    _wait_for(lambda: bool(scraped()), timeout_s=60, what="raymlops metrics on the metrics port")
    text = scraped()
    predicted = _samples(text, "ray_raymlops_predictions_total", f'model_version="{good}"')
    assert sum(predicted) >= 600  # rows, by model version
    assert re.search(r'ray_raymlops_rejected_requests_total\{[^}]*reason="invalid"', text)
    # some model calls carried more than one request: the batch-size histogram has mass above 1
    ones = sum(_samples(text, "ray_raymlops_batch_size_bucket", 'le="1.0"'))
    assert sum(_samples(text, "ray_raymlops_batch_size_count")) > ones


def _samples(text: str, name: str, containing: str = "") -> list[float]:
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and containing in line
    ]


def test_killing_the_monitor_under_traffic_loses_and_duplicates_no_logged_request(endpoint):
    """Replicas hand the log to the DriftMonitor actor; kill it mid-traffic, every 2xx id is logged once."""
    from raymlops import monitor

    cfg, ep, holdout, _, _ = endpoint
    rows = holdout.dropna().reset_index(drop=True)  # the holdout's rows with a null are not valid requests
    actor = monitor.start(cfg, jobs_address=None)  # the shared test cluster has no Jobs API
    try:
        _kill_under_traffic(cfg, ep, rows, actor)
    finally:
        monitor.stop(cfg)


def _kill_under_traffic(cfg, ep, rows, actor) -> None:
    import os
    import threading

    import ray

    answered: list[str] = []
    failed: list[str] = []
    stop = threading.Event()

    def traffic(worker: int) -> None:
        i = 0
        while not stop.is_set():
            rid = f"kill-{worker}-{i}"
            records = _records(rows, 5, start=(i * 5) % (len(rows) - 5))
            try:
                r = requests.post(
                    f"{ep.url}/predict", json={"records": records, "request_id": rid}, timeout=30
                )
                (answered if r.status_code == 200 else failed).append(f"{rid}: {r.status_code}")
            except requests.RequestException as e:
                failed.append(f"{rid}: {e}")
            i += 1

    threads = [threading.Thread(target=traffic, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    ray.kill(actor, no_restart=False)  # a crash: Ray restarts it, __init__ restores from disk
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join()
    assert not failed, failed[:5]
    ids = {a.split(":")[0] for a in answered}
    assert len(ids) > 50

    def logged() -> dict[str, int]:
        table = DeltaTable(cfg.inference_log_uri).to_pyarrow_table(columns=["request_id"])
        counts: dict[str, int] = {}
        for rid in table.column(0).to_pylist():
            if rid.startswith("kill-"):
                counts[rid] = counts.get(rid, 0) + 1
        return counts

    _wait_for(lambda: ids <= set(logged()), timeout_s=60, what="every answered request in the log")
    counts = logged()
    assert set(counts) == ids  # nothing lost, nothing the endpoint did not answer
    assert set(counts.values()) == {5}  # each request's 5 records exactly once
    status = ray.get(actor.status.remote())
    assert status["num_restarts"] >= 1 and status["champion_version"] is not None
    ray.get(actor.check_now.remote())
    assert ray.get(actor.status.remote())["num_windows"] >= 1
    url = f"http://127.0.0.1:{os.environ['RAYMLOPS_TEST_METRICS_PORT']}/metrics"
    _wait_for(
        lambda: "ray_raymlops_monitor_drift_share" in requests.get(url, timeout=10).text,
        timeout_s=60,
        what="the monitor's gauges on the metrics port",
    )
