"""The judged canary on a real endpoint: a challenger that fails live is rolled back, a sound one is
promoted, one without traffic ends inconclusive, and the champion's answers never fail meanwhile.

One module-scoped deployment on the shared local Ray (replicas follow the
registry); traffic comes from a thread posting real HTTP requests while
``run_canary`` steps, judges and acts. Serve is shut down at the end.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import uuid

import pandas as pd
import pytest
import requests

from raymlops import evaluate, pipeline, registry
from raymlops import serve as rserve
from raymlops.config import parse_config
from raymlops.data._demo import CATEGORICAL, NUMERIC
from tests.helpers.flaky_model import FACTORY

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]

FEATURES = [*NUMERIC, *CATEGORICAL]
CANARY = {
    "steps": [0.5],
    "min_requests": 25,
    "min_duration_s": 1,
    "max_duration_s": 60,
    "check_interval_s": 0.5,
    "max_error_rate": 0.01,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def canary_endpoint(trained_pair):
    from ray import serve

    raw = trained_pair.raw(
        "canaried",
        serving={
            "port": _free_port(),
            "num_replicas": 1,
            "watch_interval_s": 0.5,
            "log_flush_interval_s": 0.5,
            "max_rows_per_request": 50,
        },
        monitoring={"enabled": False},
        canary=CANARY,
    )
    cfg = parse_config(raw)
    good = registry.register(trained_pair.good, cfg)
    assert pipeline.gate_and_promote(cfg, f"canaried/{good.version}", reason="first").promoted
    holdout = trained_pair.prepared.test.to_pandas()
    ep = rserve.deploy(cfg)
    yield cfg, ep, holdout, good.version, trained_pair
    serve.shutdown()


class _Traffic:
    """Posts requests of 5 records in a thread until stopped; keeps every answer."""

    def __init__(self, url: str, frame: pd.DataFrame) -> None:
        self.url, self.frame = url, frame
        self.answers: list[tuple[int, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            start = (i * 5) % (len(self.frame) - 5)
            records = json.loads(self.frame.iloc[start : start + 5][FEATURES].to_json(orient="records"))
            reply = requests.post(
                f"{self.url}/predict",
                json={"records": records, "request_id": f"canary-test-{uuid.uuid4().hex}"},
                timeout=30,
            )
            self.answers.append((reply.status_code, reply.json()))
            i += 1


def _gated(cfg, result) -> int:
    version = registry.register(result, cfg).version
    assert evaluate.gate(cfg, f"canaried/{version}").passed
    return version


def test_a_challenger_that_fails_live_is_rolled_back_and_the_champion_never_moves(canary_endpoint):
    cfg, ep, holdout, champion, trained = canary_endpoint
    flaky = dataclasses.replace(
        trained.good, hyperparameters={**trained.good.hyperparameters, "factory": FACTORY}
    )
    bad = _gated(cfg, flaky)  # offline it answers as the champion does: the gate passes it
    before = len(registry.history(cfg))
    with _Traffic(ep.url, holdout) as traffic:
        outcome = pipeline.run_canary(cfg, f"canaried/{bad}", reason="test: flaky challenger")
    assert outcome.outcome == "rolled_back", outcome.detail
    window = outcome.steps[-1]
    assert window.figures["error_rate"] > 0.01 and "canary.max_error_rate" in window.failures[0]
    assert registry.champion(cfg).version == champion
    rollout = registry.rollout(cfg)
    assert rollout.challenger_version is None and rollout.canary_weight == 0.0
    moves = registry.history(cfg)[before:]
    assert [m.action for m in moves] == ["canary", "canary-rolled_back"], moves
    assert all(m.alias == "challenger" for m in moves)  # champion and previous never moved
    assert "error_rate" in moves[-1].reason and "canary.max_error_rate" in moves[-1].reason
    tags = registry.resolve(cfg, f"canaried/{bad}").tags
    assert tags["raymlops.canary.outcome"] == "rolled_back" and "error_rate" in tags["raymlops.canary.detail"]
    # every request got an answer; where the challenger failed, the champion answered it
    assert traffic.answers and all(status == 200 for status, _ in traffic.answers)
    routes = {body["route"] for _, body in traffic.answers}
    assert "canary_fallback" in routes and "champion" in routes, routes
    assert {body["model_version"] for _, body in traffic.answers if body["route"] != "canary"} == {
        str(champion)
    }


def test_a_sound_challenger_is_promoted_with_the_verdicts_figures_in_the_history(canary_endpoint):
    cfg, ep, holdout, _champion, trained = canary_endpoint
    current = registry.champion(cfg).version
    sound = _gated(cfg, trained.good)
    with _Traffic(ep.url, holdout) as traffic:
        outcome = pipeline.run_canary(cfg, f"canaried/{sound}", reason="test: sound challenger")
    assert outcome.outcome == "promoted", outcome.detail
    window = outcome.steps[-1]
    assert window.verdict == "passed" and window.figures["error_rate"] == 0.0
    assert window.num_challenger_requests >= CANARY["min_requests"]
    assert window.figures["agreement"] == 1.0  # the same weights: the champion agrees on every row
    assert registry.champion(cfg).version == sound
    promotion = [m for m in registry.history(cfg) if m.action == "promote" and m.alias == "champion"][-1]
    assert promotion.to_version == sound and promotion.from_version == current
    assert "canary passed" in promotion.reason and "error_rate 0" in promotion.reason
    assert all(status == 200 for status, _ in traffic.answers)


def test_a_canary_without_traffic_ends_inconclusive_and_is_not_promoted(canary_endpoint):
    cfg, _ep, _holdout, _champion, trained = canary_endpoint
    quick = cfg.model_copy(update={"canary": cfg.canary.model_copy(update={"max_duration_s": 2.0})})
    current = registry.champion(cfg).version
    idle = _gated(cfg, trained.good)
    outcome = pipeline.run_canary(quick, f"canaried/{idle}", reason="test: no traffic")
    assert outcome.outcome == "inconclusive" and "too little traffic" in outcome.detail
    assert registry.champion(cfg).version == current
    assert registry.rollout(cfg).challenger_version is None
    assert registry.history(cfg)[-1].action == "canary-inconclusive"
