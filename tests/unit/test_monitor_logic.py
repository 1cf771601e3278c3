"""The drift monitor's logic without Ray: exactly-once logging, windows across a restart, retrain jobs.

The Jobs API is replaced here by ``FakeJobs``, a recording test double: these
tests check what the monitor decides (ids, backoff, one job at a time, the
outcome it records). The real ``JobSubmissionClient`` path runs in
``tests/e2e/test_closed_loop.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from raymlops.contracts.logs import feedback_schema, inference_log_schema
from raymlops.data._demo import CATEGORICAL as DEMO_CATEGORICAL
from raymlops.data._demo import NUMERIC, generate
from raymlops.data._profile import build_profile
from raymlops.errors import JobExistsError
from raymlops.monitor import Monitor, MonitorState, Reference, job_result_uri, submission_id
from raymlops.monitor._performance import Baseline
from raymlops.serve._log import Prediction, prediction_table

CATEGORICAL = tuple(DEMO_CATEGORICAL)
FEATURES = NUMERIC + CATEGORICAL
SHIFT = {"days_since_last": 1.0, "tenure_months": 1.0, "support_calls": 1.0}


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now_s


class FakeJobs:
    """Records submissions; fails the first ``failures`` of them; statuses set by the test."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.submitted: list[str] = []
        self.entrypoints: list[str] = []
        self.statuses: dict[str, str] = {}

    def submit(self, sub_id: str, entrypoint: str, env_vars: dict[str, str]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("dashboard unreachable")
        if sub_id in self.submitted:
            raise JobExistsError(sub_id)
        self.submitted.append(sub_id)
        self.entrypoints.append(entrypoint)
        self.statuses[sub_id] = "PENDING"

    def status(self, sub_id: str) -> str:
        return self.statuses[sub_id]

    def message(self, sub_id: str) -> str:
        return "boom"


@pytest.fixture(scope="module")
def profile():
    table = generate(5000, seed=100)
    return build_profile(table, NUMERIC, (*CATEGORICAL, "churned"), num_bins=10, sample_size=5000, seed=0)


@pytest.fixture
def config(make_config):
    return make_config(
        monitoring={"window_size": 300, "min_window_size": 100, "consecutive_windows": 2, "drift_share": 0.2},
        retraining={"cooldown_s": 1000, "submit_backoff_s": 2, "submit_max_attempts": 3},
    )


def _monitor(config, profile, clock, jobs=None, baseline=0.8, cluster_address=None):
    reference = Reference(profile, config.monitoring, FEATURES, label="churned")
    monitor = Monitor(
        config,
        jobs=jobs,
        clock=clock,
        champion=lambda: 1,
        load_reference=lambda _v: (reference, Baseline(baseline, 500)),
        cluster_address=cluster_address,
    )
    monitor.restore()
    return monitor


def _batch(
    config, num_requests: int, *, seed: int, prefix: str, shift=None, per_request: int = 5
) -> pa.Table:
    rows = generate(num_requests * per_request, seed=seed, shift=shift).to_pylist()
    entries = []
    for r in range(num_requests):
        records = rows[r * per_request : (r + 1) * per_request]
        entries.append(
            Prediction(
                f"{prefix}-{r}",
                1_800_000_000_000_000 + r,
                records,
                1,
                "champion",
                [rec["churned"] for rec in records],
                [0.5] * per_request,
                None,
                None,
            )
        )
    return prediction_table(entries, inference_log_schema(config))


def _logged_ids(config) -> list[str]:
    return DeltaTable(config.inference_log_uri).to_pyarrow_table(columns=["request_id"]).column(0).to_pylist()


def test_a_resent_batch_is_logged_once(config, profile):
    monitor = _monitor(config, profile, Clock())
    batch = _batch(config, 20, seed=1, prefix="a")
    assert monitor.ingest(batch).written == 100
    again = monitor.ingest(pa.concat_tables([batch, _batch(config, 4, seed=2, prefix="b")]))
    assert (again.written, again.duplicates) == (20, 100)
    ids = _logged_ids(config)
    assert len(ids) == 120 and len(set(ids)) == 24
    rows = DeltaTable(config.inference_log_uri).to_pyarrow_table(columns=["monitor_row"]).column(0)
    assert sorted(rows.to_pylist()) == list(range(120))


def test_a_restarted_monitor_keeps_its_window_ids_and_streak(config, profile):
    clock = Clock()
    first = _monitor(config, profile, clock)
    first.ingest(_batch(config, 80, seed=3, prefix="s", shift=SHIFT))  # 400 rows: one window + 100 open
    events = first.check()
    assert first.state.num_windows == 1 and first.state.streak == 1, events
    assert "DRIFTED" in events[0]

    second = _monitor(config, profile, clock)  # a restart: __init__ again, memory empty
    assert second.state.num_restarts == 1
    assert (second.state.num_windows, second.state.streak, second._num_open) == (1, 1, 100)
    assert second.ingest(_batch(config, 80, seed=3, prefix="s", shift=SHIFT)).duplicates == 400
    assert second.ingest(_batch(config, 40, seed=4, prefix="t", shift=SHIFT)).written == 200
    second.check()  # the second drifted window in a row: a trigger
    assert second.state.num_triggers == 1
    assert second.state.jobs[0].submission_id == submission_id(config, 1)
    assert "2 drifted windows in a row" in second.state.jobs[0].reason


def test_a_trigger_survives_a_crash_before_submission_and_is_not_submitted_twice(config, profile):
    clock, jobs = Clock(), FakeJobs()
    monitor = _monitor(config, profile, clock, jobs=None)
    monitor.ingest(_batch(config, 120, seed=5, prefix="d", shift=SHIFT))
    monitor.check()  # two windows: triggered; no job client, so the job fails at once
    assert monitor.state.jobs[0].outcome == "failed" and "dashboard" in monitor.state.jobs[0].detail

    # a monitor that triggers, then "crashes" between submission and recording it
    config2 = config.model_copy(update={"name": "other"})
    monitor = _monitor(config2, profile, clock, jobs=jobs)
    monitor.ingest(_batch(config2, 120, seed=5, prefix="d", shift=SHIFT))
    monitor.check()
    sub_id = monitor.state.jobs[0].submission_id
    assert jobs.submitted == [sub_id]
    state = MonitorState.load(monitor.state_uri)
    state.jobs[0].stage = "pending"  # as if the submission's success was never persisted
    state.save(monitor.state_uri)
    restarted = _monitor(config2, profile, clock, jobs=jobs)
    restarted.check()
    assert jobs.submitted == [sub_id]  # refused as a duplicate, then followed
    assert restarted.state.jobs[0].stage == "submitted"


def test_failed_submissions_back_off_then_give_up_without_starting_the_cooldown(config, profile):
    clock, jobs = Clock(), FakeJobs(failures=5)
    monitor = _monitor(config, profile, clock, jobs=jobs)  # submit_max_attempts: 3
    monitor.ingest(_batch(config, 120, seed=6, prefix="f", shift=SHIFT))
    events = monitor.check()
    job = monitor.state.jobs[0]
    assert job.attempts == 1 and job.next_attempt_s == clock.now_s + 2, events
    clock.now_s += 1
    monitor.check()
    assert job.attempts == 1  # not yet due
    clock.now_s += 1.5
    monitor.check()
    assert job.attempts == 2 and job.next_attempt_s == clock.now_s + 4
    assert "dashboard unreachable" in job.last_error
    clock.now_s += 4
    monitor.check()
    assert job.outcome == "not_submitted" and "not submitted after 3 attempts" in job.detail
    assert monitor.state.outcomes()["not_submitted"] == 1
    # the job never ran: no cooldown, so the drift that persists triggers again at once
    assert monitor.status()["cooldown_left_s"] == 0
    monitor.ingest(_batch(config, 120, seed=61, prefix="f2", shift=SHIFT))
    monitor.check()
    assert monitor.state.num_triggers == 2 and monitor.state.active_job is not None


def test_a_refusing_jobs_api_is_retried_until_it_answers_then_one_job_and_the_cooldown(make_config, profile):
    config = make_config(
        monitoring={"window_size": 300, "min_window_size": 100, "consecutive_windows": 2, "drift_share": 0.2},
        retraining={"cooldown_s": 1000, "submit_backoff_s": 2, "submit_backoff_max_s": 8},
    )
    assert config.retraining.submit_max_attempts is None  # the default: no retry budget
    clock, jobs = Clock(), FakeJobs(failures=30)
    monitor = _monitor(config, profile, clock, jobs=jobs)
    monitor.ingest(_batch(config, 120, seed=6, prefix="r", shift=SHIFT))
    monitor.check()
    waits = []
    for _ in range(29):  # ~4 minutes of refusals, far past the old budget of 5 attempts
        job = monitor.state.active_job
        waits.append(job.next_attempt_s - clock.now_s)
        clock.now_s = job.next_attempt_s
        monitor.check()
    job = monitor.state.active_job
    assert job is not None and job.stage == "pending" and job.attempts == 30
    assert waits[:4] == [2, 4, 8, 8] and max(waits) == 8  # doubling, capped
    assert monitor.status()["cooldown_left_s"] == 0 and jobs.submitted == []
    clock.now_s = job.next_attempt_s
    events = monitor.check()  # the API answers
    assert jobs.submitted == [job.submission_id] and job.stage == "submitted", events
    assert monitor.status()["cooldown_left_s"] == 1000  # from the submission
    for _ in range(3):
        clock.now_s += 5
        monitor.check()
    assert jobs.submitted == [job.submission_id] and monitor.state.num_triggers == 1


def test_a_drift_trigger_not_yet_submitted_is_withdrawn_when_the_drift_is_gone(config, profile):
    clock, jobs = Clock(), FakeJobs(failures=2)
    monitor = _monitor(config, profile, clock, jobs=jobs)
    monitor.ingest(_batch(config, 120, seed=6, prefix="w", shift=SHIFT))
    monitor.check()
    job = monitor.state.active_job
    assert job is not None and job.kind == "drift" and job.attempts == 1
    monitor.ingest(_batch(config, 60, seed=62, prefix="w2"))  # a stationary window
    events = monitor.check()
    assert job.outcome == "withdrawn" and any("withdrawn" in e for e in events), events
    assert jobs.submitted == [] and monitor.status()["cooldown_left_s"] == 0


def test_every_retrain_job_carries_the_cluster_address(config, profile):
    jobs = FakeJobs()
    monitor = _monitor(config, profile, Clock(), jobs=jobs, cluster_address="127.0.0.1:61234")
    assert monitor.job_env()["RAYMLOPS_RAY_ADDRESS"] == "127.0.0.1:61234"


def test_the_job_address_wins_over_ray_address(config, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6479")  # another `ray start` cluster on the machine
    monkeypatch.setenv("RAYMLOPS_RAY_ADDRESS", "127.0.0.1:61234")
    assert config.ray_address == "127.0.0.1:61234"


def test_one_job_at_a_time_then_the_outcome_and_the_cooldown(config, profile):
    clock, jobs = Clock(), FakeJobs()
    monitor = _monitor(config, profile, clock, jobs=jobs)
    monitor.ingest(_batch(config, 120, seed=7, prefix="g", shift=SHIFT))
    monitor.check()
    sub_id = jobs.submitted[0]
    assert "raymlops.cli retrain" in jobs.entrypoints[0] and sub_id in jobs.entrypoints[0]
    jobs.statuses[sub_id] = "RUNNING"
    monitor.ingest(_batch(config, 120, seed=8, prefix="h", shift=SHIFT))
    events = monitor.check()
    assert any("still RUNNING" in e for e in events), events
    assert len(jobs.submitted) == 1
    path = Path(job_result_uri(config, sub_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"outcome": "rejected", "detail": "gate said no", "model_version": 2}))
    jobs.statuses[sub_id] = "SUCCEEDED"
    monitor.check()
    job = monitor.state.jobs[0]
    assert (job.outcome, job.detail, job.model_version) == ("rejected", "gate said no", 2)
    clock.now_s += 10
    monitor.ingest(_batch(config, 120, seed=9, prefix="i", shift=SHIFT))
    events = monitor.check()
    assert any("cooldown" in e for e in events) and len(jobs.submitted) == 1
    clock.now_s += 1000
    monitor.ingest(_batch(config, 120, seed=10, prefix="j", shift=SHIFT))
    monitor.check()
    assert len(jobs.submitted) == 2 and jobs.submitted[1] == submission_id(config, 2)


def test_stationary_traffic_never_triggers(config, profile):
    monitor = _monitor(config, profile, Clock(), jobs=FakeJobs())
    for i in range(10):
        monitor.ingest(_batch(config, 60, seed=100 + i, prefix=f"n{i}"))
        monitor.check()
    assert monitor.state.num_windows == 10 and monitor.state.num_triggers == 0
    lines = Path(config.locations.windows_uri).read_text().splitlines()
    assert len(lines) == 10 and json.loads(lines[0])["prediction"]["feature"] == "prediction"


def test_late_labels_below_the_holdout_metric_trigger_a_retrain(config, profile):
    clock, jobs = Clock(), FakeJobs()
    monitor = _monitor(config, profile, clock, jobs=jobs, baseline=0.9)
    batch = _batch(config, 60, seed=11, prefix="p")  # stationary: no drift trigger
    monitor.ingest(batch)
    predictions = batch.column("prediction").to_pylist()
    labels = pa.table(
        {
            "request_id": batch.column("request_id"),
            "record_index": batch.column("record_index"),
            "ts": pa.array([clock.now_s * 1e6 + 1] * batch.num_rows, pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            # the model is right on 60 % of the rows: 0.3 below its holdout accuracy
            "label": [p if i % 5 < 3 else 1 - p for i, p in enumerate(predictions)],
        },
        schema=feedback_schema(config),
    )
    write_deltalake(config.feedback_uri, labels, mode="append")
    events = monitor.check()
    perf = monitor.state.last_performance
    assert perf["value"] == pytest.approx(0.6) and perf["verdict"] == "degraded", events
    assert monitor.state.num_triggers == 1 and "performance_drop" in monitor.state.jobs[0].reason


def test_a_window_spans_the_requests_own_time_when_they_sent_it(config, profile):
    monitor = _monitor(config, profile, Clock(), jobs=FakeJobs())
    batch = _batch(config, 60, seed=40, prefix="t")
    sent = batch.column("event_time")
    assert sent.null_count == 0  # the demo's rows carry their event time, as a data row does
    monitor.ingest(batch)
    monitor.check()
    (line,) = [json.loads(x) for x in Path(config.locations.windows_uri).read_text().splitlines()]
    assert line["window_start"] == min(sent.to_pylist()).isoformat()
    assert line["window_end"] == max(sent.to_pylist()).isoformat()
