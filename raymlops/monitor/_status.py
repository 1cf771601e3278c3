"""What ``raymlops monitor status`` and ``monitor retrain`` report, read from the monitor's own state."""

from __future__ import annotations

import dataclasses
import json
import time

from raymlops._internal import files
from raymlops.config import ProjectConfig
from raymlops.errors import MonitoringError
from raymlops.monitor._performance import describe
from raymlops.monitor._report import DriftPolicy
from raymlops.monitor._state import JOB_PENDING, MonitorState


@dataclasses.dataclass(frozen=True)
class MonitorStatus:
    """The persisted state of a model's monitor, its cooldown and its last judged drift windows."""

    config: ProjectConfig
    state: MonitorState
    cooldown: str  # "none", "over" or "<n> s left"
    windows: tuple[dict[str, object], ...]  # the last drift windows of windows.jsonl, oldest first

    def render(self) -> str:
        from raymlops._internal.text import render_table

        config, state = self.config, self.state
        monitoring, retraining = config.monitoring, config.retraining
        lines = [
            f"model          {config.name}, champion version {state.champion_version}",
            f"last check     {state.last_check_at or 'never'} ({state.num_restarts} restarts)",
            f"rows           {state.next_row} logged, {state.num_duplicates} duplicates refused, "
            f"{state.next_row - state.closed_rows} in the open window (size {monitoring.window_size})",
            f"windows        {state.num_windows} closed, {state.num_drifted_windows} drifted, "
            f"streak {state.streak} of {monitoring.consecutive_windows}",
            f"last decision  {state.last_decision or '-'}",
        ]
        if state.last_performance:
            lines.append(f"live metric    {describe(state.last_performance)}")
        lines += [
            f"labels         {state.num_labelled} joined; the live metric is judged on the last "
            f"{monitoring.performance_window_size}, every {monitoring.performance_step} new",
            f"cooldown       {self.cooldown} (retraining.cooldown_s {retraining.cooldown_s:g})",
            f"retrain jobs   {state.num_triggers} triggered: "
            + ", ".join(f"{k} {v}" for k, v in state.outcomes().items()),
        ]
        for job in state.jobs[-5:]:
            status = job.outcome or job.status or job.stage
            detail = job.detail or job.reason
            if job.stage == JOB_PENDING and job.attempts:  # the Jobs API has not taken it yet
                detail = f"not submitted yet after {job.attempts} attempt(s), retrying: {job.last_error}"
            lines.append(f"  {job.submission_id}  {job.triggered_at}  {status}  {detail}")
        if self.windows:
            rows = [
                (
                    w["window"],
                    w["at"],
                    w["num_rows"],
                    f"{float(w['drift_share']):.2f}",  # type: ignore[arg-type]
                    "DRIFTED" if w["drifted"] else "stable",
                    w["decision"],
                )
                for w in self.windows
            ]
            lines.append(render_table(rows, ("window", "closed at", "rows", "share", "verdict", "decision")))
        return "\n".join(lines)


def status(config: ProjectConfig, *, num_windows: int = 5) -> MonitorStatus:
    """The monitor's state as it persisted it; needs no Ray.

    Raises:
        MonitoringError: no monitor has run for this model under this storage home.
    """
    state = MonitorState.load(config.locations.monitor_state_uri)
    if state is None:
        raise MonitoringError(
            f"no monitor state for {config.name} under {config.locations.monitor_uri}; "
            "`raymlops serve` starts the monitor (monitoring.enabled)"
        )
    cooldown = "none"
    if state.last_retrain_s is not None:
        policy = DriftPolicy(
            config.monitoring.consecutive_windows,
            config.retraining.cooldown_s,
            state.streak,
            state.last_retrain_s,
        )
        left_s = policy.cooldown_left_s(time.time())
        cooldown = f"{left_s:.0f} s left" if left_s > 0 else "over"
    text = files.read_text(config.locations.windows_uri) if num_windows > 0 else None
    judged = [json.loads(line) for line in (text or "").splitlines()]
    drift = [w for w in judged if w.get("kind", "drift") == "drift"]
    return MonitorStatus(config, state, cooldown, tuple(drift[-num_windows:] if num_windows > 0 else ()))


@dataclasses.dataclass(frozen=True)
class RetrainRequest:
    """The answer of a running monitor to ``request_retrain``."""

    triggered: bool
    events: tuple[str, ...]

    def render(self) -> str:
        return "\n".join(self.events)


def request_retrain(config: ProjectConfig, reason: str) -> RetrainRequest:
    """Ask the running monitor to retrain now (in a Ray session attached to its cluster).

    Raises:
        MonitoringError: no monitor runs for this model on the cluster.
    """
    import ray

    from raymlops.monitor._actor import get

    actor = get(config)
    if actor is None:
        raise MonitoringError(
            f"no drift monitor {config.monitor_actor_name} is running; start it with "
            "`raymlops monitor start --address ...` (or `raymlops serve`)"
        )
    answer = ray.get(actor.request_retrain.remote(reason))
    return RetrainRequest(bool(answer["triggered"]), tuple(answer["events"]))
