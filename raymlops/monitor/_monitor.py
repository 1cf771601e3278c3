"""The drift monitor's logic, without Ray: ingest, windows, checks, retrain jobs, persisted state.

``DriftMonitor`` (the Ray actor in ``_actor``) only wraps a ``Monitor`` and
calls ``check`` on a timer, so everything that decides something is here and
tested without a cluster.

- **Ingest.** Replicas hand over batches of inference-log rows. The monitor
  drops rows whose request id it has already logged, numbers the rest
  (``monitor_row``), appends them to the inference-log Delta table in one
  commit and only then acknowledges. A replica resends anything not
  acknowledged, so every answered request lands in the log exactly once.
- **Windows.** Acknowledged rows queue into the open window. A window closes at
  ``window_size`` rows, or after ``window_duration_s`` once it holds
  ``min_window_size``. Windows do not overlap, so ``consecutive_windows``
  drifted windows are that many independent pieces of evidence.
- **Performance.** Feedback labels are joined to logged predictions by
  (request id, record index); every ``performance_step`` labelled rows of the
  champion, the last ``performance_window_size`` give a live accuracy (or
  RMSE), tested against the champion's holdout metric (``_performance``).
- **Retraining.** A trigger is recorded (and persisted) before its job is
  submitted, under a submission id derived from the trigger number, so a
  restarted monitor re-submits the same id and the Jobs API refuses a
  duplicate. One job at a time per model; a failed submission is retried with
  a capped exponential backoff for as long as the trigger holds (a drift
  trigger is withdrawn by a stable window, a performance one by a window
  within bounds). The cooldown runs from the submission and from the job's
  end, never from a trigger that did not reach the Jobs API.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import shlex
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from raymlops._internal import files
from raymlops._internal.delta import delta_sink
from raymlops.config import ENV_JOB_RAY_ADDRESS, ProjectConfig
from raymlops.contracts.logs import (
    LOG_TABLE_PROPERTIES,
    MONITOR_ROW,
    RECORD_INDEX,
    REQUEST_ID,
    TS,
    inference_log_schema,
)
from raymlops.errors import JobExistsError
from raymlops.monitor._performance import Baseline, DropTest, accuracy_drop, rmse_rise
from raymlops.monitor._production import read_delta, utc_us
from raymlops.monitor._report import DriftPolicy, DriftReport, Reference, drift_report
from raymlops.monitor._state import (
    JOB_DONE,
    JOB_PENDING,
    JOB_SUBMITTED,
    TRIGGER_DRIFT,
    TRIGGER_PERFORMANCE,
    TRIGGER_REQUESTED,
    JobRecord,
    MonitorState,
)

TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")
MAX_UNMATCHED_LABELS = 100_000  # labels whose prediction is not logged yet, kept for the next check
MAX_JOBS_KEPT = 50


class JobClient(Protocol):
    """The part of Ray's ``JobSubmissionClient`` the monitor uses."""

    def submit(self, submission_id: str, entrypoint: str, env_vars: dict[str, str]) -> None: ...

    def status(self, submission_id: str) -> str: ...

    def message(self, submission_id: str) -> str: ...


class Gauges(Protocol):
    """Where the monitor reports its numbers (Prometheus gauges in the actor)."""

    def window(self, report: DriftReport) -> None: ...

    def rows(self, num_open: int, num_ingested: int, num_duplicates: int) -> None: ...

    def performance(self, metric: str, value: float) -> None: ...

    def jobs(self, outcomes: dict[str, int], running: int) -> None: ...


@dataclasses.dataclass(frozen=True)
class Ack:
    """A batch is durable: ``written`` new rows, ``duplicates`` refused as already logged."""

    written: int
    duplicates: int


def submission_id(config: ProjectConfig, trigger_number: int) -> str:
    """The job id for the n-th trigger of this model under this storage home."""
    home = hashlib.sha256(config.home_uri.encode()).hexdigest()[:8]
    return f"raymlops-retrain-{config.name}-{home}-{trigger_number}"


def job_result_uri(config: ProjectConfig, sub_id: str) -> str:
    """Where a retrain job writes its outcome (the monitor reads it when the job ends)."""
    return config.locations.job_uri(sub_id)


def live_metric_name(config: ProjectConfig) -> str:
    return "rmse" if config.model.task == "regression" else "accuracy"


class Monitor:
    """One model's monitor: call ``restore`` once, then ``ingest`` per batch and ``check`` on a timer."""

    def __init__(
        self,
        config: ProjectConfig,
        *,
        jobs: JobClient | None = None,
        gauges: Gauges | None = None,
        clock: Callable[[], float] = time.time,
        champion: Callable[[], int | None] | None = None,
        load_reference: Callable[[int], tuple[Reference, Baseline | None]] | None = None,
        cluster_address: str | None = None,
    ) -> None:
        self.config = config
        self.monitoring = config.monitoring
        self.retraining = config.retraining
        self.jobs = jobs
        self.cluster_address = cluster_address  # every job this monitor submits attaches here
        self.gauges = gauges
        self.clock = clock
        self._champion_version = champion or self._registry_champion
        self._load_reference = load_reference or self._registry_reference
        self.schema = inference_log_schema(config)
        self._append = delta_sink(config.inference_log_uri, LOG_TABLE_PROPERTIES)
        self.state_uri = config.locations.monitor_state_uri
        self.windows_uri = config.locations.windows_uri
        self.state = MonitorState()
        self.policy = DriftPolicy(self.monitoring.consecutive_windows, self.retraining.cooldown_s)
        self.reference: Reference | None = None
        self.baseline: Baseline | None = None
        self._lock = threading.RLock()
        self._seen: dict[str, float] = {}  # request id -> when it was logged (s), for the horizon
        self._open: list[pa.Table] = []
        self._num_open = 0
        self._predictions: dict[tuple[str, int], tuple[Any, int, float]] = {}  # -> (prediction, version, s)
        self._unmatched: list[tuple[str, int, Any, float]] = []  # labels waiting for their prediction

    # ------------------------------------------------------------------ restore

    def restore(self) -> None:
        """Load the persisted state and rebuild the open window and the request ids from the log."""
        with self._lock:
            loaded = MonitorState.load(self.state_uri)
            if loaded is not None:
                loaded.num_restarts += 1
                self.state = loaded
            self.policy.streak = self.state.streak
            self.policy.last_retrain_s = self.state.last_retrain_s
            now_s = self.clock()
            cutoff_us = int((now_s - self.monitoring.dedup_horizon_s) * 1e6)
            import pyarrow.compute as pc
            import pyarrow.dataset as pads

            recent = read_delta(
                self.config.inference_log_uri,
                [REQUEST_ID, RECORD_INDEX, TS, "model_version", "prediction", MONITOR_ROW],
                pads.field(TS) >= utc_us(cutoff_us),
            )
            if recent is not None and recent.num_rows:
                for rid, ts in zip(
                    recent.column(REQUEST_ID).to_pylist(),
                    pc.cast(recent.column(TS), pa.int64()).to_pylist(),
                    strict=True,
                ):
                    self._seen[rid] = ts / 1e6
                self._index_predictions(recent, now_s)
            opened = read_delta(
                self.config.inference_log_uri,
                None,
                pads.field(MONITOR_ROW) >= self.state.closed_rows,
            )
            if opened is not None and opened.num_rows:
                opened = opened.sort_by(MONITOR_ROW)
                self._open = [opened]
                self._num_open = opened.num_rows
                last = opened.column(MONITOR_ROW)[-1].as_py()
                self.state.next_row = max(self.state.next_row, int(last) + 1)
                for rid in opened.column(REQUEST_ID).to_pylist():
                    self._seen.setdefault(rid, now_s)
            perf = self.state.last_performance
            if self.gauges and perf and perf.get("value") is not None:  # a restart keeps the gauge
                self.gauges.performance(perf["metric"], float(perf["value"]))
            self._save()

    # ------------------------------------------------------------------ ingest

    def ingest(self, table: pa.Table) -> Ack:
        """Log the rows of requests not logged yet; return only once they are durable."""
        with self._lock:
            table = _conform(table, self.schema)
            ids = table.column(REQUEST_ID).to_pylist()
            keep = [rid not in self._seen for rid in ids]
            duplicates = len(ids) - sum(keep)
            new = table.filter(pa.array(keep, pa.bool_())) if duplicates else table
            if new.num_rows:
                first = self.state.next_row
                rows = pa.array(np.arange(first, first + new.num_rows, dtype=np.int64))
                new = new.set_column(new.schema.get_field_index(MONITOR_ROW), MONITOR_ROW, rows)
                self._append(new)  # raises: nothing acknowledged, nothing counted
                self.state.next_row = first + new.num_rows
                now_s = self.clock()
                for rid in new.column(REQUEST_ID).to_pylist():
                    self._seen[rid] = now_s
                self._open.append(new)
                self._num_open += new.num_rows
                self._index_predictions(new, now_s)
            self.state.num_duplicates += duplicates
            self._save()
            if self.gauges:
                self.gauges.rows(self._num_open, self.state.next_row, self.state.num_duplicates)
            return Ack(new.num_rows, duplicates)

    def _index_predictions(self, table: pa.Table, now_s: float) -> None:
        if self.monitoring.performance_drop is None:
            return
        for rid, index, prediction, version in zip(
            table.column(REQUEST_ID).to_pylist(),
            table.column(RECORD_INDEX).to_pylist(),
            table.column("prediction").to_pylist(),
            table.column("model_version").to_pylist(),
            strict=True,
        ):
            self._predictions[(rid, index)] = (prediction, version, now_s)

    # ------------------------------------------------------------------ check

    def check(self) -> list[str]:
        """Close due windows, judge them, read new labels, advance the retrain job; returns what happened."""
        with self._lock:
            now_s = self.clock()
            events: list[str] = []
            events.extend(self._advance_job(now_s))  # first: a job that ended frees the way
            self._follow_champion(events)
            if self.reference is not None:
                for window in self._due_windows(now_s):
                    events.append(self._judge(window, now_s))
                events.extend(self._performance(now_s))
            if self._submit_due():
                events.extend(self._advance_job(now_s))  # a trigger of this check goes out now
            self._forget(now_s)
            self.state.last_check_at = _iso(now_s)
            self._save()
            if self.gauges:
                self.gauges.rows(self._num_open, self.state.next_row, self.state.num_duplicates)
                active = self.state.active_job
                self.gauges.jobs(
                    self.state.outcomes(), int(active is not None and active.stage == JOB_SUBMITTED)
                )
            return events

    def _follow_champion(self, events: list[str]) -> None:
        """A new champion brings a new reference: the open window and the streak start again."""
        version = self._champion_version()
        if version is None or (self.reference is not None and version == self.state.champion_version):
            return
        self.reference, self.baseline = self._load_reference(version)
        previous = self.state.champion_version
        if previous is not None and previous != version:
            events.append(f"champion is now version {version} (was {previous}): windows start again")
            self.state.closed_rows = self.state.next_row
            self._open, self._num_open = [], 0
            self.state.labelled, self.state.num_new_labelled = [], 0
            self.policy.streak = 0
        self.state.champion_version = version

    def _registry_champion(self) -> int | None:
        from raymlops import registry

        return registry.rollout(self.config).champion_version

    def _registry_reference(self, version: int) -> tuple[Reference, Baseline | None]:
        return version_reference(self.config, version)

    def _due_windows(self, now_s: float) -> list[pa.Table]:
        size, minimum = self.monitoring.window_size, self.monitoring.min_window_size
        windows: list[pa.Table] = []
        while self._num_open >= size:
            windows.append(self._cut(size))
        duration = self.monitoring.window_duration_s
        if duration is not None and self._num_open >= minimum:
            first_ts = self._open[0].column(TS)[0].as_py()
            if now_s - first_ts.timestamp() >= duration:
                windows.append(self._cut(self._num_open))
        return windows

    def _cut(self, num_rows: int) -> pa.Table:
        table = pa.concat_tables(self._open) if len(self._open) > 1 else self._open[0]
        window, rest = table.slice(0, num_rows), table.slice(num_rows)
        self._open = [rest] if rest.num_rows else []
        self._num_open = rest.num_rows
        self.state.closed_rows = int(window.column(MONITOR_ROW)[-1].as_py()) + 1
        return window

    def _judge(self, window: pa.Table, now_s: float) -> str:
        assert self.reference is not None
        frame = window.to_pandas()
        # the window's span in the requests' own time when every row sent it, else when they arrived
        own = self.config.data.schema.time_column
        timed = own is not None and own in frame.columns and bool(frame[own].notna().all())
        report = drift_report(self.reference, frame, time_column=own if timed else TS)
        decision = self.policy.observe(report, now_s, busy=self._busy())
        self.state.num_windows += 1
        self.state.num_drifted_windows += int(report.drifted)
        self.state.last_report = report.to_dict()
        self.state.last_decision = decision.reason
        line = {
            "kind": "drift",
            "window": self.state.num_windows,
            "at": _iso(now_s),
            "champion_version": self.state.champion_version,
            "decision": decision.reason,
            "retrain": decision.retrain,
            **report.to_dict(),
        }
        files.append_line(self.windows_uri, json.dumps(line, sort_keys=True, default=str))
        if self.gauges:
            self.gauges.window(report)
        verdict = "DRIFTED" if report.drifted else "stable"
        event = f"window {self.state.num_windows}: {verdict} ({report.reason}); {decision.reason}"
        if decision.retrain:
            event += "; " + self._trigger(decision.reason, now_s, TRIGGER_DRIFT)
        elif report.enough_rows and not report.drifted:
            event += self._withdraw(TRIGGER_DRIFT, "a later window showed no drift")
        return event

    def request_retrain(self, reason: str) -> str:
        """Trigger a retrain now, through the same durable, one-at-a-time path as a drift trigger.

        The job goes out at the next ``check`` (with the usual backoff when the
        Jobs API cannot be reached). Refused while a retrain job is running.
        """
        with self._lock:
            busy = self._busy()
            if busy is not None:
                return f"not triggered: {busy}"
            return self._trigger(f"requested: {reason}", self.clock(), TRIGGER_REQUESTED)

    def _busy(self) -> str | None:
        if not self.retraining.enabled:
            return "retraining is disabled (retraining.enabled: false)"
        job = self.state.active_job
        if job is not None:
            return f"retrain job {job.submission_id} is still {job.status or job.stage}"
        return None

    def _trigger(self, reason: str, now_s: float, kind: str) -> str:
        """Record a trigger durably before anything is submitted (the id must survive a crash)."""
        self.state.num_triggers += 1
        job = JobRecord(submission_id(self.config, self.state.num_triggers), reason, _iso(now_s), kind=kind)
        self.state.jobs.append(job)
        self.state.jobs = self.state.jobs[-MAX_JOBS_KEPT:]
        self._save()
        return f"retrain triggered: job {job.submission_id}"

    def _withdraw(self, kind: str, why: str) -> str:
        """Drop a trigger of ``kind`` the Jobs API never took: the evidence behind it is gone."""
        job = self.state.active_job
        if job is None or job.stage != JOB_PENDING or job.kind != kind or job.attempts == 0:
            return ""
        self._finish(job, "withdrawn", f"{why} before the job could be submitted ({job.last_error})")
        return f"; job {job.submission_id} withdrawn: {why}"

    # ------------------------------------------------------------------ performance

    def _performance(self, now_s: float) -> list[str]:
        if self.monitoring.performance_drop is None:
            return []
        self._pull_labels(now_s)
        size, step = self.monitoring.performance_window_size, self.monitoring.performance_step
        if len(self.state.labelled) < size or self.state.num_new_labelled < step:
            return []
        self.state.labelled = self.state.labelled[-size:]
        self.state.num_new_labelled = 0
        return [self._judge_performance(self.state.labelled, now_s)]

    def _pull_labels(self, now_s: float) -> None:
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        cursor = self.state.feedback_cursor_us
        fresh = read_delta(
            self.config.feedback_uri,
            [REQUEST_ID, RECORD_INDEX, TS, "label"],
            pads.field(TS) > utc_us(cursor),
        )
        waiting, self._unmatched = self._unmatched, []
        if fresh is not None and fresh.num_rows:
            ts_us = pc.cast(fresh.column(TS), pa.int64())
            self.state.feedback_cursor_us = int(pc.max(ts_us).as_py())
            waiting.extend(
                (rid, index, label, now_s)
                for rid, index, label in zip(
                    fresh.column(REQUEST_ID).to_pylist(),
                    fresh.column(RECORD_INDEX).to_pylist(),
                    fresh.column("label").to_pylist(),
                    strict=True,
                )
            )
        champion = self.state.champion_version
        for rid, index, label, seen_s in waiting:
            found = self._predictions.get((rid, index))
            if found is None:
                if now_s - seen_s < self.monitoring.dedup_horizon_s:
                    self._unmatched.append((rid, index, label, seen_s))
                continue
            prediction, version, _ = found
            if version == champion and label is not None:
                self.state.labelled.append((prediction, label))
                self.state.num_labelled += 1
                self.state.num_new_labelled += 1
        self._unmatched = self._unmatched[-MAX_UNMATCHED_LABELS:]
        # older rows can no longer enter a judgement (it uses the last performance_window_size)
        self.state.labelled = self.state.labelled[-self.monitoring.performance_window_size :]

    def _judge_performance(self, pairs: list[tuple[Any, Any]], now_s: float) -> str:
        metric = live_metric_name(self.config)
        predicted = [p for p, _ in pairs]
        actual = [a for _, a in pairs]
        errors: np.ndarray | None = None
        if metric == "rmse":
            errors = (np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)) ** 2
            value = float(np.sqrt(np.mean(errors)))
        else:
            num_correct = sum(p == a for p, a in zip(predicted, actual, strict=True))
            value = num_correct / len(pairs)
        self.state.num_performance_windows += 1
        if self.gauges:
            self.gauges.performance(metric, value)
        drop, alpha = self.monitoring.performance_drop, self.monitoring.performance_p_value
        assert drop is not None
        record: dict[str, Any] = {
            "metric": metric,
            "value": value,
            "baseline": self.baseline.value if self.baseline else None,
            "baseline_num_rows": self.baseline.num_rows if self.baseline else None,
            "num_rows": len(pairs),
            "at": _iso(now_s),
            "champion_version": self.state.champion_version,
        }
        if self.baseline is None or not math.isfinite(self.baseline.value):
            record["verdict"] = "no holdout metric for the champion: no comparison"
            self.state.last_performance = record
            return f"live {metric} {value:.4f} on {len(pairs)} labelled rows (no holdout baseline)"
        test: DropTest = (
            rmse_rise(self.baseline, errors, alpha)
            if errors is not None
            else accuracy_drop(self.baseline, num_correct, len(pairs), alpha)
        )
        record.update(worse_by=test.worse_by, p_value=test.p_value, lower_bound=test.lower_bound)
        text = (
            f"live {metric} {value:.4f} vs holdout {self.baseline.value:.4f} "
            f"({self.baseline.num_rows or '?'} rows) on {len(pairs)} labelled rows: "
            f"worse by {test.worse_by:.4f}, p = {test.p_value:.2g}"
        )
        degraded = test.worse_by > drop and test.p_value <= alpha
        record["verdict"] = "degraded" if degraded else "ok"
        self._log_performance(record)
        if not degraded:
            why = (
                f"within monitoring.performance_drop {drop}"
                if test.worse_by <= drop
                else f"not significant (monitoring.performance_p_value {alpha})"
            )
            return text + f": {why}" + self._withdraw(TRIGGER_PERFORMANCE, "the live metric recovered")
        held = self._busy() or self.policy.cooling(now_s)
        if held:
            return text + f": degraded, but {held}"
        self.policy.streak = 0
        reason = f"{text} > monitoring.performance_drop {drop} at p <= {alpha}"
        return text + ": degraded; " + self._trigger(reason, now_s, TRIGGER_PERFORMANCE)

    def _log_performance(self, record: dict[str, Any]) -> None:
        """Keep the judgement in the state and as a line of windows.jsonl (the report reads both)."""
        self.state.last_performance = record
        files.append_line(
            self.windows_uri, json.dumps({"kind": "performance", **record}, sort_keys=True, default=str)
        )

    # ------------------------------------------------------------------ retrain jobs

    def _advance_job(self, now_s: float) -> list[str]:
        job = self.state.active_job
        if job is None:
            return []
        if job.stage == JOB_PENDING:
            return self._submit(job, now_s)
        assert self.jobs is not None
        try:
            status = self.jobs.status(job.submission_id)
        except Exception as e:  # the dashboard may be briefly unreachable: ask again next check
            return [f"job {job.submission_id}: status unknown ({type(e).__name__}: {e})"]
        if status == job.status:
            return []
        job.status = status
        if status not in TERMINAL_STATUSES:
            return [f"job {job.submission_id}: {status}"]
        result = self._read_result(job.submission_id)
        if status == "SUCCEEDED" and result is not None:
            job.model_version = result.get("model_version")
            job.labels_through_us = result.get("labels_through_us")
            self._finish(job, str(result.get("outcome", "failed")), str(result.get("detail", "")))
        else:
            try:
                message = self.jobs.message(job.submission_id)
            except Exception as e:
                message = f"{type(e).__name__}: {e}"
            detail = str(result.get("detail", message)) if result is not None else message
            self._finish(job, "failed", f"job {status}: {detail}")
        # the cooldown runs from the job's end too: a retrain's effect needs fresh windows to judge
        self.policy.started(now_s)
        return [f"job {job.submission_id}: {status}, outcome {job.outcome}: {job.detail}"]

    def _finish(self, job: JobRecord, outcome: str, detail: str) -> None:
        job.stage, job.outcome, job.detail = JOB_DONE, outcome, detail
        self.state.outcome_counts[outcome] = self.state.outcome_counts.get(outcome, 0) + 1

    def _submit_due(self) -> bool:
        job = self.state.active_job
        return job is not None and job.stage == JOB_PENDING and job.attempts == 0

    def _submit(self, job: JobRecord, now_s: float) -> list[str]:
        if now_s < job.next_attempt_s:
            return []
        if self.jobs is None:
            self._finish(
                job,
                "failed",
                "no Ray Jobs API to submit to: the cluster runs without its dashboard "
                "(start Ray with include_dashboard=True, or `ray start --head` with the dashboard)",
            )
            # not transient: without the cooldown every second window would record another failure
            self.policy.started(now_s)
            return [f"job {job.submission_id}: {job.detail}"]
        job.attempts += 1
        try:
            self.jobs.submit(job.submission_id, self.entrypoint(job), self.job_env())
        except JobExistsError:
            pass  # submitted before a restart: follow that one
        except Exception as e:  # the Jobs API is down, starting, or has no agent yet: all transient
            job.last_error = f"{type(e).__name__}: {e}"
            limit = self.retraining.submit_max_attempts
            if limit is not None and job.attempts >= limit:
                # no cooldown: the drift behind it is still unanswered and may trigger again
                self._finish(
                    job, "not_submitted", f"not submitted after {job.attempts} attempts: {job.last_error}"
                )
                return [f"job {job.submission_id}: {job.detail}"]
            wait_s = min(
                self.retraining.submit_backoff_s * 2 ** (job.attempts - 1),
                self.retraining.submit_backoff_max_s,
            )
            job.next_attempt_s = now_s + wait_s
            return [f"job {job.submission_id}: submission failed ({e}); retrying in {wait_s:.0f} s"]
        job.stage, job.last_error = JOB_SUBMITTED, ""
        self.policy.started(now_s)
        return [f"job {job.submission_id}: submitted"]

    def entrypoint(self, job: JobRecord) -> str:
        """The retrain command; the config goes as a file under the storage home, which the job shares."""
        path = self.config.locations.monitor_config_uri
        files.replace_text(path, self.config.with_resolved_home().model_dump_json(indent=1))
        since = max(
            (j.labels_through_us for j in self.state.jobs if j.labels_through_us is not None), default=None
        )
        command = [
            sys.executable,
            "-m",
            "raymlops.cli",
            "retrain",
            "--config",
            str(path),
            "--submission-id",
            job.submission_id,
        ]
        if since is not None:
            command += ["--labels-after-us", str(since)]
        return shlex.join(command)

    def job_env(self) -> dict[str, str]:
        from raymlops.config import ENV_HOME

        env = {ENV_HOME: self.config.home_uri, "MLFLOW_TRACKING_URI": self.config.mlflow_tracking_uri}
        if self.cluster_address:
            env[ENV_JOB_RAY_ADDRESS] = self.cluster_address
        return env

    def _read_result(self, sub_id: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = json.loads(files.read_text(job_result_uri(self.config, sub_id)) or "null")
        except (OSError, ValueError):
            return None
        return body

    # ------------------------------------------------------------------ housekeeping

    def _forget(self, now_s: float) -> None:
        """Drop request ids and predictions older than the de-duplication horizon."""
        cutoff = now_s - self.monitoring.dedup_horizon_s
        if self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen = {rid: s for rid, s in self._seen.items() if s >= cutoff}
        if self._predictions and next(iter(self._predictions.values()))[2] < cutoff:
            self._predictions = {k: v for k, v in self._predictions.items() if v[2] >= cutoff}

    def _save(self) -> None:
        """Persist the state; the policy's streak and last trigger are copied in (the policy owns them)."""
        self.state.streak, self.state.last_retrain_s = self.policy.streak, self.policy.last_retrain_s
        self.state.save(self.state_uri)

    def status(self) -> dict[str, Any]:
        """Everything ``raymlops monitor status`` shows."""
        with self._lock:
            body = json.loads(self.state.to_json())
            body.pop("labelled", None)
            body["num_open_rows"] = self._num_open
            body["num_labelled_waiting"] = len(self.state.labelled)
            body["num_unmatched_labels"] = len(self._unmatched)
            body["outcomes"] = self.state.outcomes()
            body["baseline"] = {
                live_metric_name(self.config): self.baseline.value if self.baseline else None,
                "num_rows": self.baseline.num_rows if self.baseline else None,
            }
            body["window_size"] = self.monitoring.window_size
            body["cooldown_left_s"] = self.policy.cooldown_left_s(self.clock())
            return body


def version_reference(config: ProjectConfig, version: int) -> tuple[Reference, Baseline | None]:
    """A version's reference (its bundle's profile) and its holdout metric (None if never gated)."""
    from raymlops import registry

    ref = f"{config.name}/{version}"
    profile = registry.load_profile(config, ref)
    schema = config.data.schema
    reference = Reference(profile, config.monitoring, schema.feature_names, label=schema.label.name)
    value = registry.holdout_metric(config, ref, live_metric_name(config))
    if value is None:
        return reference, None
    num_rows = registry.holdout_metric(config, ref, "num_rows")
    return reference, Baseline(value, int(num_rows) if num_rows is not None else None)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The replica's table in the log's exact schema (a missing ``monitor_row`` is added as nulls)."""
    if MONITOR_ROW not in table.column_names:
        table = table.append_column(MONITOR_ROW, pa.nulls(table.num_rows, pa.int64()))
    return table.select(schema.names).cast(schema)


def _iso(now_s: float) -> str:
    return dt.datetime.fromtimestamp(now_s, dt.UTC).isoformat(timespec="seconds")
