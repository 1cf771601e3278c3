"""Gate rules on synthetic evaluations: each rule's verdict, values and wording."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from raymlops.evaluate import Evaluation, FairnessGap, FeatureImportance, GateReport, SliceMetrics, check

BASE = {"accuracy": 0.80, "f1": 0.70, "roc_auc": 0.85, "log_loss": 0.45, "calibration_error": 0.03}


def _eval(version: int, metrics: dict[str, float] | None = None, **fields) -> Evaluation:
    body = dict(
        model_name="churn",
        model_version=version,
        task="binary",
        data_table_uri="/t",
        data_version=3,
        data_digest="ab" * 32,
        num_rows=1000,
        metrics={**BASE, **(metrics or {})},
        slices=(),
        importance=(FeatureImportance("age", 0.1, 0.01, 1.0),),
        importance_metric="log_loss",
        fairness=(),
        created_at="2026-11-23T00:00:00Z",
    )
    body.update(fields)
    return Evaluation(**body)


def _by_rule(checks, rule, subject="overall"):
    return next(c for c in checks if c.rule == rule and c.subject == subject)


def test_worse_than_champion_beyond_allowed_regression_fails_naming_both_values(make_config):
    cfg = make_config(gate={"rules": [{"metric": "roc_auc", "threshold": 0.6, "max_regression": 0.01}]})
    checks = check(_eval(2, {"roc_auc": 0.80}), _eval(1), cfg)
    failed = _by_rule(checks, "roc_auc max_regression")
    assert failed.passed is False and (failed.observed, failed.baseline, failed.limit) == (0.80, 0.85, 0.01)
    assert "0.8000" in failed.detail and "0.8500" in failed.detail and "worse by 0.0500" in failed.detail
    assert _by_rule(checks, "roc_auc threshold").passed is True
    # within the allowed regression: passes
    assert _by_rule(check(_eval(2, {"roc_auc": 0.845}), _eval(1), cfg), "roc_auc max_regression").passed


def test_first_model_gets_absolute_rules_only(make_config):
    cfg = make_config(
        gate={
            "rules": [
                {"metric": "roc_auc", "threshold": 0.9, "min_absolute_change": 0.01, "max_regression": 0}
            ]
        }
    )
    checks = check(_eval(1), None, cfg)
    assert _by_rule(checks, "roc_auc threshold").passed is False
    for rule in ("roc_auc min_absolute_change", "roc_auc max_regression"):
        skipped = _by_rule(checks, rule)
        assert skipped.passed is None and "no champion" in skipped.detail


def test_lower_is_better_metrics_turn_every_comparison_around(make_config):
    cfg = make_config(gate={"rules": [{"metric": "log_loss", "threshold": 0.5, "min_relative_change": 0.05}]})
    better = check(_eval(2, {"log_loss": 0.40}), _eval(1), cfg)  # 11% lower loss
    assert (
        _by_rule(better, "log_loss threshold").passed
        and _by_rule(better, "log_loss min_relative_change").passed
    )
    worse = check(_eval(2, {"log_loss": 0.44}), _eval(1), cfg)  # 2% lower: not enough
    assert _by_rule(worse, "log_loss min_relative_change").passed is False
    explicit = make_config(
        gate={"rules": [{"metric": "log_loss", "threshold": 0.5, "greater_is_better": True}]}
    )
    assert _by_rule(check(_eval(2, {"log_loss": 0.40}), None, explicit), "log_loss threshold").passed is False


def test_slice_floor_names_the_slice_and_skips_small_slices(make_config):
    cfg = make_config(gate={"slice_floors": {"plan": 0.7}, "min_slice_rows": 30})
    slices = (
        SliceMetrics("plan", "basic", 300, {**BASE, "accuracy": 0.81}, 0.3),
        SliceMetrics("plan", "premium", 250, {**BASE, "accuracy": 0.65}, 0.2),
        SliceMetrics("plan", "null", 5, {**BASE, "accuracy": 0.2}, 0.2),
        SliceMetrics("region", "north", 300, {**BASE, "accuracy": 0.1}, 0.2),  # no floor on region
    )
    checks = check(_eval(2, slices=slices), None, cfg)
    slice_checks = [c for c in checks if c.rule.startswith("slice")]
    assert [(c.subject, c.passed) for c in slice_checks] == [
        ("plan=basic", True),
        ("plan=premium", False),
        ("plan=null", None),
    ]
    assert "0.6500" in slice_checks[1].detail and "250 rows" in slice_checks[1].detail


def test_fairness_and_importance_rules(make_config):
    cfg = make_config(
        gate={"max_fairness_gap": 0.05, "max_positive_rate_gap": 0.1, "max_importance_share": 0.5}
    )
    evaluation = _eval(
        2,
        fairness=(FairnessGap("region", "accuracy", 0.08, 0.04, "north", "south", 4),),
        importance=(
            FeatureImportance("days_since_last", 0.3, 0.01, 0.6),
            FeatureImportance("age", 0.2, 0.01, 0.4),
        ),
    )
    checks = check(evaluation, None, cfg)
    assert _by_rule(checks, "fairness gap accuracy", "region").passed is False
    assert _by_rule(checks, "fairness positive-rate gap", "region").passed is True
    share = _by_rule(checks, "importance share", "days_since_last")
    assert share.passed is False and "60.0%" in share.detail
    nan = _eval(2, importance=(FeatureImportance("age", math.nan, math.nan, 0.0),))
    assert _by_rule(check(nan, None, cfg), "importance finite", "all features").passed is False


def test_undefined_metric_fails_instead_of_passing_silently(make_config):
    checks = check(_eval(2, {"roc_auc": math.nan}), None, make_config())
    assert [c.passed for c in checks if c.rule.startswith("roc_auc")] == [False]


def test_report_round_trips_through_json_and_renders(make_config):
    cfg = make_config(gate={"slice_floors": {"plan": 0.7}})
    challenger = _eval(
        2, {"roc_auc": 0.7}, slices=(SliceMetrics("plan", "basic", 40, {**BASE, "roc_auc": math.nan}, 0.1),)
    )
    checks = check(challenger, _eval(1), cfg)
    report = GateReport(
        "gate-x", "churn", 2, 1, all(c.passed is not False for c in checks), checks, challenger, _eval(1), "t"
    )
    again = GateReport.from_json(report.to_json())
    assert again.passed is False and again.checks == report.checks
    assert math.isnan(again.challenger.slices[0].metrics["roc_auc"])
    assert dataclasses.replace(again, challenger=report.challenger) == report
    assert "REJECTED" in report.summary() and "roc_auc max_regression" in report.summary()
    assert "| FAIL | roc_auc max_regression | overall | 0.7000 | 0.8500 | 0.0100 |" in report.to_markdown()


@pytest.mark.parametrize(
    ("gate", "path"),
    [
        ({"rules": [{"metric": "rmse"}]}, "gate.rules[0].metric"),
        ({"slice_metric": "auc"}, "gate.slice_metric"),
        ({"slice_floors": {"channel": 0.5}}, "gate.slice_floors"),
    ],
)
def test_gate_config_errors_name_the_key(make_config, gate, path):
    from raymlops.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make_config(gate=gate)
    assert path in str(info.value)


def test_stored_report_with_undefined_importance_loads_and_renders(make_config):
    challenger = _eval(2, importance=(FeatureImportance("age", math.nan, math.nan, 0.0),))
    checks = check(challenger, None, make_config())
    report = GateReport("gate-y", "churn", 2, None, False, checks, challenger, None, "t")
    again = GateReport.from_json(report.to_json())
    assert math.isnan(again.challenger.importance[0].importance)
    assert "age" in again.challenger.render() and "| age | nan |" in again.to_markdown()


def test_undefined_champion_metric_skips_the_comparison(make_config):
    cfg = make_config(gate={"rules": [{"metric": "roc_auc", "max_regression": 0.01}]})
    (only,) = [c for c in check(_eval(2), _eval(1, {"roc_auc": math.nan}), cfg) if c.rule.startswith("roc")]
    assert only.passed is None and "undefined" in only.detail


@pytest.mark.parametrize(
    ("sections", "path"),
    [
        ({"gate": {"rules": [{"metric": "roc_auc"}]}}, "gate.rules[0]"),
        (
            {"model": {"task": "multiclass"}, "gate": {"max_positive_rate_gap": 0.1}},
            "gate.max_positive_rate_gap",
        ),
    ],
)
def test_gate_settings_that_would_never_be_checked_are_refused(make_config, sections, path):
    from raymlops.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make_config(**sections)
    assert path in str(info.value)


def test_slice_groups_follow_the_schema_kind():
    import numpy as np
    import pandas as pd

    from raymlops.evaluate._scoring import _groups

    codes, names = _groups(pd.Series([0, 1, 1, None], dtype="Int64"), None)  # an int categorical
    assert names == ["0", "1", "null"] and codes.tolist() == [0, 1, 1, 2]
    codes, names = _groups(pd.Series([5.0, 5.0, np.nan]), 4)  # constant numeric with a null
    assert names == ["5", "null"] and codes.tolist() == [0, 0, 1]
    codes, names = _groups(pd.Series([1.0, 2.0, 3.0, 4.0, np.inf, -np.inf, np.nan]), 2)
    assert names[-1] == "null" and codes.tolist()[-1] == len(names) - 1
    assert codes[4] == len(names) - 2 and codes[5] == 0  # infinities go to the outer bins


def test_a_badly_calibrated_challenger_fails_the_default_ceiling(make_config):
    checks = check(_eval(2, {"calibration_error": 0.39}), None, make_config())
    ceiling = _by_rule(checks, "calibration_error ceiling", "overall")
    assert (
        ceiling.passed is False and ceiling.limit == 0.25 and "gate.max_calibration_error" in ceiling.detail
    )
    assert _by_rule(check(_eval(2), None, make_config()), "calibration_error ceiling", "overall").passed
    off = make_config(gate={"max_calibration_error": None})  # overridable
    assert not [c for c in check(_eval(2, {"calibration_error": 0.39}), None, off) if "calibration" in c.rule]


def test_intervals_are_seeded_bootstraps_that_hold_the_metric_and_shrink_with_more_rows():
    from raymlops.evaluate._metrics import Scored, accuracy, bootstrap_intervals

    rng = np.random.default_rng(0)

    def scored(n: int) -> Scored:
        y = rng.integers(0, 2, n)
        p1 = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.3, n), 0.01, 0.99)
        proba = np.column_stack([1 - p1, p1])
        return Scored(y, (p1 > 0.5).astype(int), proba)

    small, large = scored(56), scored(5000)
    a = bootstrap_intervals(small, "binary", 200, seed=0)
    assert a == bootstrap_intervals(small, "binary", 200, seed=0)  # seeded: the same report twice
    low, high = a["accuracy"]
    assert low <= accuracy(small.y_true, small.y_pred) <= high
    large_low, large_high = bootstrap_intervals(large, "binary", 200, seed=0)["accuracy"]
    assert (large_high - large_low) < (high - low) / 4  # ~sqrt(5000 / 56) narrower
    assert set(a) == {"accuracy", "f1", "roc_auc", "log_loss", "calibration_error"}


def test_a_small_holdout_is_reported_with_intervals_and_a_warning(make_config):
    from raymlops.evaluate import _holdout_warnings

    cfg = make_config()
    challenger = dataclasses.replace(_eval(2), num_rows=56, intervals={"roc_auc": (0.71, 0.95)})
    (warning,) = _holdout_warnings(challenger, cfg)
    assert (
        "only 56 holdout rows (gate.min_holdout_rows 200)" in warning
        and "roc_auc 0.8500 [0.7100, 0.9500]" in warning
    )
    assert _holdout_warnings(dataclasses.replace(challenger, num_rows=500), cfg) == ()
    checks = check(challenger, None, cfg)
    report = GateReport("gate-z", "churn", 2, None, True, checks, challenger, None, "t", (warning,))
    assert "warning: only 56 holdout rows" in report.summary()
    assert (
        "holdout metrics with 95 % intervals (56 rows): roc_auc 0.8500 [0.7100, 0.9500]" in report.summary()
    )
    again = GateReport.from_json(report.to_json())
    assert again.warnings == (warning,) and again.challenger.intervals == {"roc_auc": (0.71, 0.95)}
    assert "**Warning:** only 56" in report.to_markdown()
