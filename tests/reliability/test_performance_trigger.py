"""The live-metric trigger on a small real dataset: never on noise, still on a real drop.

scikit-learn's breast-cancer set (569 rows, 30 numeric features, binary)
ships inside the package. A scaled logistic regression is fitted on 270 rows;
180 rows are the gate's holdout; the other 119 are production. (With a
120-row holdout, the 10-point drop below gives p = 0.002: the holdout's own
noise is counted, so a smaller holdout needs a larger or longer drop.) The monitor's own performance path
(``Monitor._performance``, the last ``performance_window_size`` labelled rows
every ``performance_step`` new ones) judges the labelled production rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from raymlops.monitor import Monitor
from raymlops.monitor._performance import Baseline, accuracy_drop, rmse_rise

pytestmark = pytest.mark.reliability  # no Ray: the monitor's logic on real data, with its figures


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[:270], y[:270])
    holdout = model.predict(x[270:450]) == y[270:450]
    return model.predict(x[450:]), y[450:], Baseline(float(holdout.mean()), len(holdout))


def _monitor(make_config, baseline: Baseline) -> Monitor:
    config = make_config(monitoring={"performance_drop": 0.05})  # the defaults: 200 rows, every 50
    monitor = Monitor(config, champion=lambda: 1, load_reference=lambda _v: (None, baseline))
    monitor.restore()
    monitor.baseline, monitor.state.champion_version = baseline, 1
    return monitor


def _feed(monitor: Monitor, predicted, actual, now_s: float) -> list[str]:
    monitor.state.labelled.extend(zip(predicted.tolist(), actual.tolist(), strict=True))
    monitor.state.num_labelled += len(actual)
    monitor.state.num_new_labelled += len(actual)
    return monitor.performance.check(monitor.state, monitor.baseline, now_s)


def _judged(monitor: Monitor) -> list[dict]:
    lines = Path(monitor.windows_uri).read_text().splitlines()
    return [w for w in map(json.loads, lines) if w["kind"] == "performance"]


def test_two_hundred_stationary_windows_of_fifty_labels_never_trigger(make_config, cancer, figures):
    predicted, actual, baseline = cancer
    monitor = _monitor(make_config, baseline)
    rng = np.random.default_rng(1)
    bare_drops = 0
    for i in range(203):  # the first three fill the 200-row window; then 200 judgements
        rows = rng.integers(0, len(actual), 50)  # production traffic: the same distribution
        _feed(monitor, predicted[rows], actual[rows], 1_800_000_000.0 + i)
        bare_drops += baseline.value - (predicted[rows] == actual[rows]).mean() > 0.05
    judged = _judged(monitor)
    assert len(judged) == 200 and all(w["num_rows"] == 200 for w in judged)
    assert [w for w in judged if w["verdict"] != "ok"] == []
    assert monitor.state.num_triggers == 0
    # the bare subtraction of old on each 50-row window would have fired on this same traffic
    assert bare_drops > 0
    worst = max(judged, key=lambda w: w["worse_by"])
    figures.update(
        holdout_accuracy=round(baseline.value, 4),
        holdout_rows=baseline.num_rows,
        judgements=len(judged),
        triggers=monitor.state.num_triggers,
        bare_subtraction_triggers_on_50_rows=bare_drops,
        largest_chance_drop=round(worst["worse_by"], 4),
        its_p_value=worst["p_value"],
    )


def test_a_real_ten_point_drop_on_two_hundred_labels_is_caught(make_config, cancer):
    predicted, actual, baseline = cancer
    monitor = _monitor(make_config, baseline)
    rows = np.random.default_rng(2).integers(0, len(actual), 200)  # 200 production requests
    labels = actual[rows].copy()
    # a concept shift: some cases are now labelled the other way; the model is unchanged
    correct = np.flatnonzero(predicted[rows] == labels)
    target_wrong = round(200 * (1 - (baseline.value - 0.10)))
    flip = correct[: target_wrong - int((predicted[rows] != labels).sum())]
    labels[flip] = 1 - labels[flip]
    live = float((predicted[rows] == labels).mean())
    assert live == pytest.approx(baseline.value - 0.10, abs=0.005)
    events = _feed(monitor, predicted[rows], labels, 1_800_000_000.0)
    (judged,) = _judged(monitor)
    assert judged["verdict"] == "degraded" and judged["p_value"] <= 0.001, events
    assert monitor.state.num_triggers == 1 and monitor.state.jobs[0].kind == "performance"
    assert "p = " in monitor.state.jobs[0].reason


def test_the_false_trigger_from_the_field_is_not_significant():
    # 50 live labels at 0.92 against a 56-row holdout at 0.9821: worse by 0.062, but noise
    test = accuracy_drop(Baseline(0.9821, 56), 46, 50, 0.001)
    assert test.worse_by == pytest.approx(0.0621) and test.p_value > 0.05


def test_the_accuracy_p_value_is_where_the_newcombe_bound_reaches_zero():
    baseline = Baseline(0.95, 300)
    test = accuracy_drop(baseline, 170, 200, 0.001)  # 0.85 live
    assert 0 < test.p_value < 0.001 and test.lower_bound > 0
    at_its_level = accuracy_drop(baseline, 170, 200, test.p_value)
    assert at_its_level.lower_bound == pytest.approx(0.0, abs=1e-6)
    # the same drop on fewer rows is less certain; a better live metric is no drop at all
    assert accuracy_drop(baseline, 17, 20, 0.001).p_value > test.p_value
    assert accuracy_drop(baseline, 196, 200, 0.001).p_value == 1.0


def test_the_rmse_rise_matches_a_two_sample_normal_test():
    rng = np.random.default_rng(3)
    squared = rng.normal(0, 1.3, 400) ** 2
    baseline = Baseline(1.0, 400)
    test = rmse_rise(baseline, squared, 0.001)
    se = np.std(squared, ddof=1) * np.sqrt(1 / 400 + 1 / 400)
    assert test.p_value == pytest.approx(stats.norm.sf((squared.mean() - 1.0) / se))
    assert test.worse_by == pytest.approx(np.sqrt(squared.mean()) - 1.0)


def test_a_judgement_reads_the_same_in_monitor_status_and_the_report():
    from raymlops.monitor import describe_performance

    record = {
        "metric": "accuracy",
        "value": 0.865,
        "baseline": 0.9722,
        "baseline_num_rows": 180,
        "num_rows": 200,
        "worse_by": 0.1072,
        "p_value": 0.00021,
        "verdict": "degraded",
    }
    assert describe_performance(record) == (
        "accuracy 0.8650 on 200 labelled rows (holdout 0.9722 on 180 rows, worse by 0.1072, p = 0.00021): "
        "degraded"
    )
    older = {"metric": "accuracy", "value": 0.9, "baseline": None, "num_rows": 500, "verdict": "no holdout"}
    assert (
        describe_performance(older) == "accuracy 0.9000 on 500 labelled rows (no holdout metric): no holdout"
    )
