"""``DriftMonitor``: the detached Ray actor that runs a model's ``Monitor`` beside its endpoint.

One actor per model, named ``raymlops-monitor-<model>`` in ``runtime.namespace``,
detached (it outlives the process that started it), restarted without limit
when it dies (``max_restarts=-1``) and holding ``monitoring.num_cpus`` (≤ 0.25)
of a CPU. A restart re-runs ``__init__``, which restores the persisted state
and rebuilds the open window from the inference log, so nothing the actor
acknowledged is lost. Calls that were in flight when it died are retried by
Ray (``max_task_retries=-1``) and by the replicas; both are safe because
``ingest`` de-duplicates by request id.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pyarrow as pa

from raymlops.config import ProjectConfig
from raymlops.errors import JobExistsError
from raymlops.monitor._monitor import Ack, Monitor
from raymlops.monitor._report import DriftReport

_LOG = logging.getLogger("raymlops.monitor")


class RayJobs:
    """``JobClient`` over Ray's ``JobSubmissionClient`` (the dashboard's Jobs API)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = None

    def _get(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.address)
        return self._client

    def submit(self, submission_id: str, entrypoint: str, env_vars: dict[str, str]) -> None:
        try:
            self._get().submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env={"env_vars": env_vars},
                metadata={"raymlops": "retrain"},
            )
        except Exception as e:
            if "already exists" in str(e):
                raise JobExistsError(submission_id) from e
            self._client = None  # a fresh client next time: the dashboard may have moved or restarted
            raise

    def status(self, submission_id: str) -> str:
        return str(self._get().get_job_status(submission_id).value)

    def message(self, submission_id: str) -> str:
        info = self._get().get_job_info(submission_id)
        return str(info.message or "")


class RayGauges:
    """The monitor's Prometheus gauges (Ray exports them as ``ray_raymlops_monitor_*``)."""

    def __init__(self, model: str) -> None:
        from ray.util import metrics

        self.model = model
        self._statistic = metrics.Gauge(
            "raymlops_monitor_drift_statistic",
            description="drift statistic of a feature in the last closed window",
            tag_keys=("model", "feature", "test"),
        )
        self._drifted = metrics.Gauge(
            "raymlops_monitor_feature_drifted",
            description="1 when the feature drifted in the last closed window",
            tag_keys=("model", "feature"),
        )
        self._share = metrics.Gauge(
            "raymlops_monitor_drift_share",
            description="share of drifted features in the last closed window",
            tag_keys=("model",),
        )
        self._window = metrics.Gauge(
            "raymlops_monitor_window_rows",
            description="rows in the last closed window (closed) and in the open one (open)",
            tag_keys=("model", "window"),
        )
        self._rows = metrics.Gauge(
            "raymlops_monitor_rows",
            description="rows acknowledged into the inference log (ingested) and refused as duplicates",
            tag_keys=("model", "kind"),
        )
        self._live = metrics.Gauge(
            "raymlops_monitor_live_metric",
            description="the champion's metric on the last window of labelled production rows",
            tag_keys=("model", "metric"),
        )
        self._jobs = metrics.Gauge(
            "raymlops_monitor_retrain_jobs",
            description="retrain jobs by outcome (running: submitted and not ended)",
            tag_keys=("model", "outcome"),
        )

    def window(self, report: DriftReport) -> None:
        tags = {"model": self.model}
        for f in report.features:
            self._statistic.set(f.statistic, tags={**tags, "feature": f.feature, "test": f.test})
            self._drifted.set(float(f.drifted), tags={**tags, "feature": f.feature})
        if report.prediction is not None:
            p = report.prediction
            self._statistic.set(p.statistic, tags={**tags, "feature": "prediction", "test": p.test})
        self._share.set(report.drift_share, tags=tags)
        self._window.set(report.num_rows, tags={**tags, "window": "closed"})

    def rows(self, num_open: int, num_ingested: int, num_duplicates: int) -> None:
        tags = {"model": self.model}
        self._window.set(num_open, tags={**tags, "window": "open"})
        self._rows.set(num_ingested, tags={**tags, "kind": "ingested"})
        self._rows.set(num_duplicates, tags={**tags, "kind": "duplicate"})

    def performance(self, metric: str, value: float) -> None:
        self._live.set(value, tags={"model": self.model, "metric": metric})

    def jobs(self, outcomes: dict[str, int], running: int) -> None:
        for outcome, count in {**outcomes, "running": running}.items():
            self._jobs.set(count, tags={"model": self.model, "outcome": outcome})


# nice(2) increment for the monitor's process: background work next to the replicas it watches
_MONITOR_NICENESS = 10


def _lower_priority() -> None:
    """Run the monitor's process below the replicas' priority, so it takes the CPU they leave.

    Judging windows and committing the log cost the actor ~0.2 of a core at
    650 requests/s; on a node it shares with the endpoint that came out of the
    replicas' share: 0.93x the throughput of an endpoint without a monitor,
    measured in ``benchmarks/serve_throughput.py`` (``benchmarks/README.md``).
    Lowering one's own priority needs no privilege; where it fails, the monitor
    runs as it is.
    """
    import os

    try:
        os.nice(_MONITOR_NICENESS)
    except (AttributeError, OSError) as e:  # no nice() on this platform, or refused
        _LOG.debug("monitor keeps its CPU priority: %s", e)


class DriftMonitor:
    """The actor: a ``Monitor`` and a thread that calls its ``check`` every ``check_interval_s``."""

    def __init__(self, config_json: str, jobs_address: str | None) -> None:
        import ray

        config = ProjectConfig.model_validate_json(config_json)
        _lower_priority()
        self.monitor = Monitor(
            config,
            jobs=RayJobs(jobs_address) if jobs_address else None,
            gauges=RayGauges(config.name),
            # the jobs run on this cluster: said explicitly, or Ray's job supervisor may attach
            # them to another `ray start` cluster on the same machine
            cluster_address=ray.get_runtime_context().gcs_address,
        )
        self.monitor.restore()
        self._stop = threading.Event()
        self._interval_s = config.monitoring.check_interval_s
        self._thread = threading.Thread(target=self._loop, name="drift-checks", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._check()

    def _check(self) -> list[str]:
        try:
            events = self.monitor.check()
        except Exception as e:  # keep checking: the registry or the log may be briefly unreachable
            _LOG.warning("drift check failed: %s: %s", type(e).__name__, e)
            return [f"check failed: {type(e).__name__}: {e}"]
        for event in events:  # to the actor's log file; `raymlops monitor status` shows the state
            _LOG.info("%s: %s", self.monitor.config.name, event)
        return events

    def ingest(self, table: pa.Table) -> Ack:
        return self.monitor.ingest(table)

    def check_now(self) -> list[str]:
        """One check at once (tests and ``raymlops monitor status --check``)."""
        return self._check()

    def request_retrain(self, reason: str) -> dict[str, Any]:
        """Trigger a retrain now and submit it in the same call (``raymlops monitor retrain``).

        Returns ``triggered`` (a new trigger was recorded) and what happened, in order.
        """
        before = self.monitor.state.num_triggers
        first = self.monitor.request_retrain(reason)
        triggered = self.monitor.state.num_triggers > before
        return {"triggered": triggered, "events": [first, *self._check()]}

    def status(self) -> dict[str, Any]:
        return self.monitor.status()

    def ready(self) -> bool:
        return True


def start(config: ProjectConfig, *, jobs_address: str | None = None) -> Any:
    """Start the model's monitor actor, or return the running one; waits until it has restored.

    ``jobs_address`` is the Ray dashboard URL retrain jobs are submitted to
    (default: this cluster's dashboard, when it has one).
    """
    import ray

    if jobs_address is None:
        from raymlops.runtime import dashboard_url

        jobs_address = dashboard_url()
    actor = (
        ray.remote(DriftMonitor)
        .options(
            name=config.monitor_actor_name,
            namespace=config.runtime.namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=-1,
            num_cpus=config.monitoring.num_cpus,
            max_concurrency=4,  # ingest from several replicas while a check runs
        )
        .remote(config.with_resolved_home().model_dump_json(), jobs_address)
    )
    ray.get(actor.ready.remote())  # type: ignore[attr-defined]
    return actor


def get(config: ProjectConfig) -> Any | None:
    """The running monitor actor of this model, or None."""
    import ray

    try:
        return ray.get_actor(config.monitor_actor_name, namespace=config.runtime.namespace)
    except ValueError:
        return None


def stop(config: ProjectConfig) -> bool:
    """Stop the monitor for good (no restart); True when one was running."""
    import ray

    actor = get(config)
    if actor is None:
        return False
    ray.kill(actor, no_restart=True)
    return True
