"""Windows of demo traffic against the training reference: no false alarms, a real shift found fast."""

from __future__ import annotations

import pytest

from raymlops.config import MonitoringConfig
from raymlops.data._demo import CATEGORICAL as DEMO_CATEGORICAL
from raymlops.data._demo import NUMERIC, generate
from raymlops.data._profile import build_profile
from raymlops.monitor import DriftPolicy, Reference, drift_report

CATEGORICAL = tuple(DEMO_CATEGORICAL)
FEATURES = NUMERIC + CATEGORICAL


@pytest.fixture(scope="module")
def profile():
    return build_profile(
        generate(5000, seed=100), NUMERIC, CATEGORICAL, num_bins=10, sample_size=5000, seed=0
    )


@pytest.mark.parametrize(
    "tests", [{}, {**dict.fromkeys(NUMERIC, "ks"), **dict.fromkeys(CATEGORICAL, "chi2")}]
)
def test_two_hundred_stationary_windows_raise_no_retrain(profile, tests):
    monitoring = MonitoringConfig(window_size=1000, min_window_size=200, consecutive_windows=2, tests=tests)
    reference = Reference(profile, monitoring, FEATURES)
    policy = DriftPolicy(monitoring.consecutive_windows, cooldown_s=0)
    decisions = [
        policy.observe(drift_report(reference, generate(1000, seed=1000 + i).to_pandas()), i)
        for i in range(200)
    ]
    assert not any(d.retrain for d in decisions)


def test_a_half_std_shift_on_two_features_triggers_within_consecutive_windows(profile):
    monitoring = MonitoringConfig(
        window_size=1000, min_window_size=200, consecutive_windows=2, drift_share=0.15
    )
    reference = Reference(profile, monitoring, FEATURES)
    policy = DriftPolicy(monitoring.consecutive_windows, cooldown_s=600)
    shift = {"days_since_last": 0.5, "tenure_months": 0.5}
    decisions = []
    for i in range(monitoring.consecutive_windows):
        report = drift_report(reference, generate(1000, seed=2000 + i, shift=shift).to_pandas())
        assert set(report.drifted_features) == set(shift)
        decisions.append(policy.observe(report, now_s=10.0 * i))
    assert [d.retrain for d in decisions] == [False, True]
    assert policy.cooldown_left_s(15.0) == 0  # a trigger alone starts no cooldown: its job may never go out
    policy.started(10.0)  # the monitor submitted the job
    # the cooldown holds the next trigger back
    more = [
        policy.observe(
            drift_report(reference, generate(1000, seed=3000 + i, shift=shift).to_pandas()), 20 + i
        )
        for i in range(3)
    ]
    assert not any(d.retrain for d in more) and "cooldown" in more[-1].reason


def test_small_windows_get_no_verdict_and_critical_features_decide_alone(profile):
    monitoring = MonitoringConfig(min_window_size=200, window_size=1000, critical_features=("support_calls",))
    reference = Reference(profile, monitoring, FEATURES)
    small = drift_report(reference, generate(50, seed=1).to_pandas())
    assert not small.enough_rows and not small.drifted and "no verdict" in small.reason
    report = drift_report(reference, generate(1000, seed=7, shift={"support_calls": 1.0}).to_pandas())
    assert report.drifted and report.drift_share < 0.5 and "critical" in report.reason
