"""The canary's judge on synthetic inference-log windows: each rule, the minimum traffic, the verdicts."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from raymlops.config import parse_config
from raymlops.errors import ConfigError
from raymlops.pipeline._canary import judge
from tests.conftest import demo_raw_config

CHAMPION, CHALLENGER = 1, 2


def _config(tmp_path, **canary):
    rules = {"min_requests": 20, "max_duration_s": 60, "min_duration_s": 0, **canary}
    return parse_config(demo_raw_config(tmp_path / "home", canary=rules))


def _rows(n_champion: int, n_canary: int, *, n_failed: int = 0, canary_ms: float = 2.0, flip: float = 0.0):
    """Requests of one record each: the champion's, the challenger's and the failed ones."""
    rows: dict[str, list] = {
        k: []
        for k in (
            "request_id",
            "record_index",
            "model_version",
            "route",
            "prediction",
            "shadow_version",
            "shadow_prediction",
            "model_ms",
        )
    }

    def add(rid, version, route, prediction, shadow_version, shadow_prediction, ms):
        for key, value in zip(
            rows, (rid, 0, version, route, prediction, shadow_version, shadow_prediction, ms), strict=True
        ):
            rows[key].append(value)

    for i in range(n_champion):
        add(f"a{i}", CHAMPION, "champion", i % 2, None, None, 2.0)
    for i in range(n_canary):
        answer = (i % 2) if i >= flip * n_canary else 1 - (i % 2)
        add(f"b{i}", CHALLENGER, "canary", answer, CHAMPION, i % 2, canary_ms)
    for i in range(n_failed):
        add(f"c{i}", CHAMPION, "canary_fallback", i % 2, CHALLENGER, None, 2.0)
    return pa.table(rows)


def _judge(config, rows, duration_s=10.0, labels=None):
    return judge(
        config, rows, labels, champion=CHAMPION, challenger=CHALLENGER, weight=0.25, duration_s=duration_s
    )


def test_a_healthy_challenger_passes_with_its_figures(tmp_path):
    window = _judge(_config(tmp_path), _rows(60, 30))
    assert window.verdict == "passed", window.summary()
    assert window.figures["error_rate"] == 0 and window.figures["agreement"] == 1.0
    assert window.figures["prediction_shift"] < 0.05 and window.figures["latency_ratio"] == 1.0
    assert "canary passed" in window.summary() and "agreement 1" in window.summary()


def test_failures_fail_the_canary_at_once_naming_the_rule(tmp_path):
    window = _judge(_config(tmp_path), _rows(5, 3, n_failed=2))  # before min_requests
    assert window.verdict == "failed"
    assert (
        window.failures
        and "error_rate" in window.failures[0]
        and "canary.max_error_rate" in window.failures[0]
    )


def test_a_slow_challenger_fails_the_latency_rule(tmp_path):
    window = _judge(_config(tmp_path), _rows(60, 30, canary_ms=80.0))
    assert window.verdict == "failed" and window.figures["latency_ratio"] == pytest.approx(8.0)
    assert any("latency_ratio" in f for f in window.failures)


def test_agreement_and_shift_are_judged_only_when_set(tmp_path):
    rows = _rows(60, 30, flip=1.0)  # the challenger answers the opposite of the champion
    assert _judge(_config(tmp_path), rows).verdict == "passed"
    strict = _judge(_config(tmp_path, min_agreement=0.8), rows)
    assert strict.verdict == "failed" and strict.figures["agreement"] == 0.0
    assert any("canary.min_agreement" in f for f in strict.failures)


def test_too_little_traffic_waits_then_ends_inconclusive(tmp_path):
    config = _config(tmp_path)
    assert _judge(config, _rows(60, 5), duration_s=10).verdict == "pending"
    late = _judge(config, _rows(60, 5), duration_s=61)
    assert late.verdict == "inconclusive" and "too little traffic" in late.failures[0]
    assert _judge(config, None, duration_s=61).verdict == "inconclusive"


def test_min_duration_holds_a_pass_back(tmp_path):
    config = _config(tmp_path, min_duration_s=30)
    assert _judge(config, _rows(60, 30), duration_s=10).verdict == "pending"
    assert _judge(config, _rows(60, 30), duration_s=31).verdict == "passed"


def test_late_labels_judge_the_accuracy_drop(tmp_path):
    rows = _rows(60, 60, flip=1.0)  # the challenger is wrong wherever the champion is right
    labels = pa.table(
        {
            "request_id": [f"a{i}" for i in range(60)] + [f"b{i}" for i in range(60)],
            "record_index": [0] * 120,
            "label": [i % 2 for i in range(60)] * 2,
        }
    )
    window = _judge(_config(tmp_path, min_labelled=50), rows, labels=labels)
    assert window.figures["accuracy_drop"] == pytest.approx(1.0)
    assert window.verdict == "failed" and any("canary.max_accuracy_drop" in f for f in window.failures)


@pytest.mark.parametrize(
    ("canary", "key"),
    [
        ({"min_request": 5}, "canary.min_request"),
        ({"max_error_rate": 1.5}, "canary.max_error_rate"),
        ({"min_requests": 0}, "canary.min_requests"),
        ({"min_duration_s": 100, "max_duration_s": 10}, "canary.min_duration_s"),
        ({"steps": [0.5, 0.1]}, "canary.steps"),
        ({"steps": [0.0]}, "canary.steps"),
        ({"steps": []}, "canary.steps"),
    ],
)
def test_bad_canary_config_names_the_key(tmp_path, canary, key):
    with pytest.raises(ConfigError) as raised:
        parse_config(demo_raw_config(tmp_path / "home", canary=canary))
    assert key in str(raised.value)


def test_the_older_retraining_keys_keep_their_meaning(tmp_path):
    raw = demo_raw_config(tmp_path / "home", retraining={"canary_weight": 0.3, "canary_duration_s": 4})
    rules = parse_config(raw).canary
    assert rules.steps == (0.3,) and rules.min_duration_s == 4
    raw["canary"] = {"steps": [0.1, 0.5]}
    assert parse_config(raw).canary.steps == (0.1, 0.5)


def test_a_canary_of_no_duration_still_means_no_canary_after_a_dump_and_a_reload(tmp_path):
    raw = demo_raw_config(tmp_path / "home", retraining={"canary_duration_s": 0})
    config = parse_config(raw)
    assert config.canary.steps == () and not config.canary.enabled
    again = parse_config(json.loads(config.model_dump_json(by_alias=True)))  # what a retrain job reads
    assert again.canary == config.canary
