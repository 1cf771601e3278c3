"""The live metric: feedback labels joined to logged predictions, judged against the holdout.

Labels are joined to logged predictions by (request id, record index); every
``performance_step`` labelled rows of the champion, the last
``performance_window_size`` give a live accuracy (or RMSE), tested against the
champion's holdout metric with a one-sided test that counts the noise of both
samples (``_performance``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from raymlops._internal import files
from raymlops.config import ProjectConfig
from raymlops.contracts.logs import RECORD_INDEX, REQUEST_ID, TS
from raymlops.monitor._jobs import RetrainScheduler, iso
from raymlops.monitor._performance import Baseline, DropTest, accuracy_drop, rmse_rise
from raymlops.monitor._production import read_delta, utc_us
from raymlops.monitor._state import TRIGGER_PERFORMANCE, MonitorState

if TYPE_CHECKING:
    from raymlops.monitor._report import DriftReport

MAX_UNMATCHED_LABELS = 100_000  # labels whose prediction is not logged yet, kept for the next check


class Gauges(Protocol):
    """Where the monitor reports its numbers (Prometheus gauges in the actor)."""

    def window(self, report: DriftReport) -> None: ...

    def rows(self, num_open: int, num_ingested: int, num_duplicates: int) -> None: ...

    def performance(self, metric: str, value: float) -> None: ...

    def jobs(self, outcomes: dict[str, int], running: int) -> None: ...


def live_metric_name(config: ProjectConfig) -> str:
    return "rmse" if config.model.task == "regression" else "accuracy"


class LivePerformance:
    """Remembers recent predictions, joins the labels that arrive, judges the live metric."""

    def __init__(
        self,
        config: ProjectConfig,
        scheduler: RetrainScheduler,
        gauges: Gauges | None,
        log_line: Callable[[dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.monitoring = config.monitoring
        self.metric = live_metric_name(config)
        self.scheduler = scheduler
        self.gauges = gauges
        self._log_line = log_line
        self._predictions: dict[tuple[str, int], tuple[Any, int, float]] = {}  # -> (prediction, version, s)
        self._unmatched: list[tuple[str, int, Any, float]] = []  # labels waiting for their prediction

    @property
    def enabled(self) -> bool:
        return self.monitoring.performance_drop is not None

    @property
    def num_unmatched(self) -> int:
        return len(self._unmatched)

    def index(self, table: pa.Table, now_s: float) -> None:
        """Remember logged predictions, for labels that arrive later."""
        if not self.enabled:
            return
        for rid, index, prediction, version in zip(
            table.column(REQUEST_ID).to_pylist(),
            table.column(RECORD_INDEX).to_pylist(),
            table.column("prediction").to_pylist(),
            table.column("model_version").to_pylist(),
            strict=True,
        ):
            self._predictions[(rid, index)] = (prediction, version, now_s)

    def forget(self, cutoff_s: float) -> None:
        """Drop predictions remembered before ``cutoff_s``."""
        if self._predictions and next(iter(self._predictions.values()))[2] < cutoff_s:
            self._predictions = {k: v for k, v in self._predictions.items() if v[2] >= cutoff_s}

    def check(self, state: MonitorState, baseline: Baseline | None, now_s: float) -> list[str]:
        """Pull new labels; judge the live metric when ``performance_step`` new ones came."""
        if not self.enabled:
            return []
        self._pull_labels(state, now_s)
        size, step = self.monitoring.performance_window_size, self.monitoring.performance_step
        if len(state.labelled) < size or state.num_new_labelled < step:
            return []
        state.labelled = state.labelled[-size:]
        state.num_new_labelled = 0
        return [self._judge(state, baseline, state.labelled, now_s)]

    def _pull_labels(self, state: MonitorState, now_s: float) -> None:
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        fresh = read_delta(
            self.config.feedback_uri,
            [REQUEST_ID, RECORD_INDEX, TS, "label"],
            pads.field(TS) > utc_us(state.feedback_cursor_us),
        )
        waiting, self._unmatched = self._unmatched, []
        if fresh is not None and fresh.num_rows:
            ts_us = pc.cast(fresh.column(TS), pa.int64())
            state.feedback_cursor_us = int(pc.max(ts_us).as_py())
            waiting.extend(
                (rid, index, label, now_s)
                for rid, index, label in zip(
                    fresh.column(REQUEST_ID).to_pylist(),
                    fresh.column(RECORD_INDEX).to_pylist(),
                    fresh.column("label").to_pylist(),
                    strict=True,
                )
            )
        champion = state.champion_version
        for rid, index, label, seen_s in waiting:
            found = self._predictions.get((rid, index))
            if found is None:
                if now_s - seen_s < self.monitoring.dedup_horizon_s:
                    self._unmatched.append((rid, index, label, seen_s))
                continue
            prediction, version, _ = found
            if version == champion and label is not None:
                state.labelled.append((prediction, label))
                state.num_labelled += 1
                state.num_new_labelled += 1
        self._unmatched = self._unmatched[-MAX_UNMATCHED_LABELS:]
        # older rows can no longer enter a judgement (it uses the last performance_window_size)
        state.labelled = state.labelled[-self.monitoring.performance_window_size :]

    def _judge(
        self, state: MonitorState, baseline: Baseline | None, pairs: list[tuple[Any, Any]], now_s: float
    ) -> str:
        metric = self.metric
        predicted = [p for p, _ in pairs]
        actual = [a for _, a in pairs]
        errors: np.ndarray | None = None
        if metric == "rmse":
            errors = (np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)) ** 2
            value = float(np.sqrt(np.mean(errors)))
        else:
            num_correct = sum(p == a for p, a in zip(predicted, actual, strict=True))
            value = num_correct / len(pairs)
        state.num_performance_windows += 1
        if self.gauges:
            self.gauges.performance(metric, value)
        drop, alpha = self.monitoring.performance_drop, self.monitoring.performance_p_value
        assert drop is not None
        record: dict[str, Any] = {
            "metric": metric,
            "value": value,
            "baseline": baseline.value if baseline else None,
            "baseline_num_rows": baseline.num_rows if baseline else None,
            "num_rows": len(pairs),
            "at": iso(now_s),
            "champion_version": state.champion_version,
        }
        if baseline is None or not math.isfinite(baseline.value):
            record["verdict"] = "no holdout metric for the champion: no comparison"
            state.last_performance = record
            return f"live {metric} {value:.4f} on {len(pairs)} labelled rows (no holdout baseline)"
        test: DropTest = (
            rmse_rise(baseline, errors, alpha)
            if errors is not None
            else accuracy_drop(baseline, num_correct, len(pairs), alpha)
        )
        record.update(worse_by=test.worse_by, p_value=test.p_value, lower_bound=test.lower_bound)
        text = (
            f"live {metric} {value:.4f} vs holdout {baseline.value:.4f} "
            f"({baseline.num_rows or '?'} rows) on {len(pairs)} labelled rows: "
            f"worse by {test.worse_by:.4f}, p = {test.p_value:.2g}"
        )
        degraded = test.worse_by > drop and test.p_value <= alpha
        record["verdict"] = "degraded" if degraded else "ok"
        # kept in the state and as a line of windows.jsonl (the report reads both)
        state.last_performance = record
        self._log_line({"kind": "performance", **record})
        if not degraded:
            why = (
                f"within monitoring.performance_drop {drop}"
                if test.worse_by <= drop
                else f"not significant (monitoring.performance_p_value {alpha})"
            )
            recovered = self.scheduler.withdraw(state, TRIGGER_PERFORMANCE, "the live metric recovered")
            return text + f": {why}" + recovered
        held = self.scheduler.busy(state) or self.scheduler.policy.cooling(now_s)
        if held:
            return text + f": degraded, but {held}"
        self.scheduler.policy.streak = 0
        reason = f"{text} > monitoring.performance_drop {drop} at p <= {alpha}"
        return text + ": degraded; " + self.scheduler.trigger(state, reason, now_s, TRIGGER_PERFORMANCE)


def append_window_line(windows_uri: str) -> Callable[[dict[str, Any]], None]:
    """A writer of one JSON line per judged window to ``windows.jsonl``."""

    def write(line: dict[str, Any]) -> None:
        files.append_line(windows_uri, json.dumps(line, sort_keys=True, default=str))

    return write
