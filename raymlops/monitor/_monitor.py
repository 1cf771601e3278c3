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
- **Performance.** Feedback labels joined to logged predictions give a live
  metric, tested against the champion's holdout metric (``LivePerformance``
  in ``_labels``).
- **Retraining.** Triggers become retrain jobs, one at a time, durably
  (``RetrainScheduler`` in ``_jobs``). A drift trigger the Jobs API never took
  is withdrawn by a stable window, a performance one by a window within bounds.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from raymlops._internal.delta import delta_sink
from raymlops.config import ProjectConfig
from raymlops.contracts.logs import (
    LOG_TABLE_PROPERTIES,
    MODEL_MS,
    MONITOR_ROW,
    RECORD_INDEX,
    REQUEST_ID,
    TS,
    inference_log_schema,
)
from raymlops.monitor._jobs import JobClient, RetrainScheduler, iso, job_result_uri, submission_id
from raymlops.monitor._labels import Gauges, LivePerformance, append_window_line, live_metric_name
from raymlops.monitor._performance import Baseline
from raymlops.monitor._production import read_delta, utc_us
from raymlops.monitor._report import DriftPolicy, Reference, drift_report
from raymlops.monitor._state import TRIGGER_DRIFT, TRIGGER_REQUESTED, MonitorState

__all__ = [
    "Ack",
    "Gauges",
    "JobClient",
    "Monitor",
    "job_result_uri",
    "live_metric_name",
    "submission_id",
    "version_reference",
]


@dataclasses.dataclass(frozen=True)
class Ack:
    """A batch is durable: ``written`` new rows, ``duplicates`` refused as already logged."""

    written: int
    duplicates: int


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
        self.gauges = gauges
        self.clock = clock
        self._champion_version = champion or self._registry_champion
        self._load_reference = load_reference or self._registry_reference
        self._registry: Any = None  # built on first use: a monitor under test may never need one
        self.schema = inference_log_schema(config)
        self._append = delta_sink(config.inference_log_uri, LOG_TABLE_PROPERTIES)
        self.state_uri = config.locations.monitor_state_uri
        self.windows_uri = config.locations.windows_uri
        self._log_line = append_window_line(self.windows_uri)
        self.state = MonitorState()
        self.policy = DriftPolicy(self.monitoring.consecutive_windows, self.retraining.cooldown_s)
        self.scheduler = RetrainScheduler(config, self.policy, jobs, cluster_address, self._save)
        self.performance = LivePerformance(config, self.scheduler, gauges, self._log_line)
        self.reference: Reference | None = None
        self.baseline: Baseline | None = None
        self._lock = threading.RLock()
        self._seen: dict[str, float] = {}  # request id -> when it was logged (s), for the horizon
        self._open: list[pa.Table] = []
        self._num_open = 0

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
                self.performance.index(recent, now_s)
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
                self.performance.index(new, now_s)
            self.state.num_duplicates += duplicates
            self._save()
            if self.gauges:
                self.gauges.rows(self._num_open, self.state.next_row, self.state.num_duplicates)
            return Ack(new.num_rows, duplicates)

    # ------------------------------------------------------------------ check

    def check(self) -> list[str]:
        """Close due windows, judge them, read new labels, advance the retrain job; returns what happened."""
        with self._lock:
            now_s = self.clock()
            events: list[str] = []
            events.extend(self.scheduler.advance(self.state, now_s))  # first: a job that ended frees the way
            self._follow_champion(events)
            if self.reference is not None:
                for window in self._due_windows(now_s):
                    events.append(self._judge(window, now_s))
                events.extend(self.performance.check(self.state, self.baseline, now_s))
            if self.scheduler.submit_due(self.state):
                events.extend(
                    self.scheduler.advance(self.state, now_s)
                )  # a trigger of this check goes out now
            self._forget(now_s)
            self.state.last_check_at = iso(now_s)
            self._save()
            if self.gauges:
                self.gauges.rows(self._num_open, self.state.next_row, self.state.num_duplicates)
                self.gauges.jobs(self.state.outcomes(), self.scheduler.running(self.state))
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
        if self._registry is None:
            from raymlops.registry import Registry

            self._registry = Registry(self.config)
        return self._registry.rollout().champion_version

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
        decision = self.policy.observe(report, now_s, busy=self.scheduler.busy(self.state))
        self.state.num_windows += 1
        self.state.num_drifted_windows += int(report.drifted)
        self.state.last_report = report.to_dict()
        self.state.last_decision = decision.reason
        line = {
            "kind": "drift",
            "window": self.state.num_windows,
            "at": iso(now_s),
            "champion_version": self.state.champion_version,
            "decision": decision.reason,
            "retrain": decision.retrain,
            **report.to_dict(),
        }
        self._log_line(line)
        if self.gauges:
            self.gauges.window(report)
        verdict = "DRIFTED" if report.drifted else "stable"
        event = f"window {self.state.num_windows}: {verdict} ({report.reason}); {decision.reason}"
        if decision.retrain:
            event += "; " + self.scheduler.trigger(self.state, decision.reason, now_s, TRIGGER_DRIFT)
        elif report.enough_rows and not report.drifted:
            event += self.scheduler.withdraw(self.state, TRIGGER_DRIFT, "a later window showed no drift")
        return event

    def request_retrain(self, reason: str) -> str:
        """Trigger a retrain now, through the same durable, one-at-a-time path as a drift trigger.

        The job goes out at the next ``check`` (with the usual backoff when the
        Jobs API cannot be reached). Refused while a retrain job is running.
        """
        with self._lock:
            busy = self.scheduler.busy(self.state)
            if busy is not None:
                return f"not triggered: {busy}"
            return self.scheduler.trigger(self.state, f"requested: {reason}", self.clock(), TRIGGER_REQUESTED)

    def job_env(self) -> dict[str, str]:
        """The environment of the retrain jobs this monitor submits."""
        return self.scheduler.job_env()

    # ------------------------------------------------------------------ housekeeping

    def _forget(self, now_s: float) -> None:
        """Drop request ids and predictions older than the de-duplication horizon."""
        cutoff = now_s - self.monitoring.dedup_horizon_s
        if self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen = {rid: s for rid, s in self._seen.items() if s >= cutoff}
        self.performance.forget(cutoff)

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
            body["num_unmatched_labels"] = self.performance.num_unmatched
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
    from raymlops.registry import Registry

    registry = Registry(config)
    ref = f"{config.name}/{version}"
    profile = registry.load_profile(ref)
    schema = config.data.schema
    reference = Reference(profile, config.monitoring, schema.feature_names, label=schema.label.name)
    value = registry.holdout_metric(ref, live_metric_name(config))
    if value is None:
        return reference, None
    num_rows = registry.holdout_metric(ref, "num_rows")
    return reference, Baseline(value, int(num_rows) if num_rows is not None else None)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The replica's table in the log's exact schema (columns an older replica lacks are added as nulls)."""
    for name in (MODEL_MS, MONITOR_ROW):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(schema.names).cast(schema)
