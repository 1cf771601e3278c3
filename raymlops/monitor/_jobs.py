"""The retrain-job state machine: a trigger is recorded durably, submitted, followed, finished.

A trigger is recorded (and persisted) before its job is submitted, under a
submission id derived from the trigger number, so a restarted monitor
re-submits the same id and the Jobs API refuses a duplicate. One job at a time
per model; a failed submission is retried with a capped exponential backoff for
as long as the trigger holds. The cooldown runs from the submission and from
the job's end, never from a trigger that did not reach the Jobs API.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any, Protocol

from raymlops._internal import files
from raymlops.config import ENV_HOME, ENV_JOB_RAY_ADDRESS, ProjectConfig
from raymlops.errors import JobExistsError
from raymlops.monitor._report import DriftPolicy
from raymlops.monitor._state import JOB_DONE, JOB_PENDING, JOB_SUBMITTED, JobRecord, MonitorState

TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")
MAX_JOBS_KEPT = 50


class JobClient(Protocol):
    """The part of Ray's ``JobSubmissionClient`` the monitor uses."""

    def submit(self, submission_id: str, entrypoint: str, env_vars: dict[str, str]) -> None: ...

    def status(self, submission_id: str) -> str: ...

    def message(self, submission_id: str) -> str: ...


def submission_id(config: ProjectConfig, trigger_number: int) -> str:
    """The job id for the n-th trigger of this model under this storage home."""
    home = hashlib.sha256(config.home_uri.encode()).hexdigest()[:8]
    return f"raymlops-retrain-{config.name}-{home}-{trigger_number}"


def job_result_uri(config: ProjectConfig, sub_id: str) -> str:
    """Where a retrain job writes its outcome (the monitor reads it when the job ends)."""
    return config.locations.job_uri(sub_id)


def iso(now_s: float) -> str:
    return dt.datetime.fromtimestamp(now_s, dt.UTC).isoformat(timespec="seconds")


class RetrainScheduler:
    """Turns triggers into retrain jobs, one at a time, and follows each to its outcome.

    It reads and writes the monitor's ``MonitorState`` (passed to each call: a
    restore replaces it) and asks ``save`` to persist it when a trigger must
    survive a crash.
    """

    def __init__(
        self,
        config: ProjectConfig,
        policy: DriftPolicy,
        jobs: JobClient | None,
        cluster_address: str | None,
        save: Callable[[], None],
    ) -> None:
        self.config = config
        self.retraining = config.retraining
        self.policy = policy
        self.jobs = jobs
        self.cluster_address = cluster_address  # every job this monitor submits attaches here
        self._save = save

    def busy(self, state: MonitorState) -> str | None:
        """Why no new trigger may be taken now, or None."""
        if not self.retraining.enabled:
            return "retraining is disabled (retraining.enabled: false)"
        job = state.active_job
        if job is not None:
            return f"retrain job {job.submission_id} is still {job.status or job.stage}"
        return None

    def trigger(self, state: MonitorState, reason: str, now_s: float, kind: str) -> str:
        """Record a trigger durably before anything is submitted (the id must survive a crash)."""
        state.num_triggers += 1
        job = JobRecord(submission_id(self.config, state.num_triggers), reason, iso(now_s), kind=kind)
        state.jobs.append(job)
        state.jobs = state.jobs[-MAX_JOBS_KEPT:]
        self._save()
        return f"retrain triggered: job {job.submission_id}"

    def withdraw(self, state: MonitorState, kind: str, why: str) -> str:
        """Drop a trigger of ``kind`` the Jobs API never took: the evidence behind it is gone."""
        job = state.active_job
        if job is None or job.stage != JOB_PENDING or job.kind != kind or job.attempts == 0:
            return ""
        self._finish(state, job, "withdrawn", f"{why} before the job could be submitted ({job.last_error})")
        return f"; job {job.submission_id} withdrawn: {why}"

    def submit_due(self, state: MonitorState) -> bool:
        """A trigger recorded in this check that has not been tried yet."""
        job = state.active_job
        return job is not None and job.stage == JOB_PENDING and job.attempts == 0

    def advance(self, state: MonitorState, now_s: float) -> list[str]:
        """Submit a pending job when its time has come, or follow a submitted one; what happened."""
        job = state.active_job
        if job is None:
            return []
        if job.stage == JOB_PENDING:
            return self._submit(state, job, now_s)
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
            self._finish(state, job, str(result.get("outcome", "failed")), str(result.get("detail", "")))
        else:
            try:
                message = self.jobs.message(job.submission_id)
            except Exception as e:
                message = f"{type(e).__name__}: {e}"
            detail = str(result.get("detail", message)) if result is not None else message
            self._finish(state, job, "failed", f"job {status}: {detail}")
        # the cooldown runs from the job's end too: a retrain's effect needs fresh windows to judge
        self.policy.started(now_s)
        return [f"job {job.submission_id}: {status}, outcome {job.outcome}: {job.detail}"]

    def running(self, state: MonitorState) -> int:
        active = state.active_job
        return int(active is not None and active.stage == JOB_SUBMITTED)

    def entrypoint(self, state: MonitorState, job: JobRecord) -> str:
        """The retrain command; the config goes as a file under the storage home, which the job shares."""
        path = self.config.locations.monitor_config_uri
        files.replace_text(path, self.config.with_resolved_home().model_dump_json(indent=1))
        since = max(
            (j.labels_through_us for j in state.jobs if j.labels_through_us is not None), default=None
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
        env = {ENV_HOME: self.config.home_uri, "MLFLOW_TRACKING_URI": self.config.mlflow_tracking_uri}
        if self.cluster_address:
            env[ENV_JOB_RAY_ADDRESS] = self.cluster_address
        return env

    def _finish(self, state: MonitorState, job: JobRecord, outcome: str, detail: str) -> None:
        job.stage, job.outcome, job.detail = JOB_DONE, outcome, detail
        state.outcome_counts[outcome] = state.outcome_counts.get(outcome, 0) + 1

    def _submit(self, state: MonitorState, job: JobRecord, now_s: float) -> list[str]:
        if now_s < job.next_attempt_s:
            return []
        if self.jobs is None:
            self._finish(
                state,
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
            self.jobs.submit(job.submission_id, self.entrypoint(state, job), self.job_env())
        except JobExistsError:
            pass  # submitted before a restart: follow that one
        except Exception as e:  # the Jobs API is down, starting, or has no agent yet: all transient
            job.last_error = f"{type(e).__name__}: {e}"
            limit = self.retraining.submit_max_attempts
            if limit is not None and job.attempts >= limit:
                # no cooldown: the drift behind it is still unanswered and may trigger again
                self._finish(
                    state,
                    job,
                    "not_submitted",
                    f"not submitted after {job.attempts} attempts: {job.last_error}",
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

    def _read_result(self, sub_id: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = json.loads(files.read_text(job_result_uri(self.config, sub_id)) or "null")
        except (OSError, ValueError):
            return None
        return body
