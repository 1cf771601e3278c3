"""The serving half of the demo: an endpoint and its drift monitor, real HTTP traffic, the loop closing.

Everything goes through the real parts: requests and labels over HTTP to the
Ray Serve endpoint, the ``DriftMonitor`` actor judging windows, the retrain
job submitted through the Ray Jobs API, the registry moving the champion.
This module only drives traffic and watches; it decides nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from raymlops.config import ProjectConfig
from raymlops.pipeline._stages import Say

# the drift the demo injects: six features move up by one standard deviation (all bounded only
# below, so every row stays valid) and the two strongest effects on churn flip sign, so the
# champion gets worse and a model retrained on the new rows can do better
SHIFT = {
    "income_k": 1.0,
    "tenure_months": 1.0,
    "avg_basket": 1.0,
    "days_since_last": 1.0,
    "support_calls": 1.0,
    "session_minutes": 1.0,
}
CONCEPT_SHIFT = 1.0
RECORDS_PER_REQUEST = 50
RETRAIN_REQUESTS_PER_TICK = 4  # every 0.5 s while the retrain job runs
JOB_TIMEOUT_S = 480.0


class Traffic:
    """Sends rows to ``/predict`` and their labels to ``/feedback``; counts what failed."""

    def __init__(self, url: str, config: ProjectConfig) -> None:
        import requests

        self.url = url
        self.session = requests.Session()
        schema = config.data.schema
        self.columns = [*schema.feature_names, *(c.name for c in schema.metadata_columns)]
        if schema.id_column:
            self.columns.append(schema.id_column)
        self.label = schema.label.name
        self.num_requests = 0
        self.failures: list[str] = []
        self.champion_versions: list[int] = []  # each champion answer's version, in order

    def send(self, table: pa.Table, *, per_request: int = RECORDS_PER_REQUEST) -> None:
        import requests

        rows = table.to_pylist()
        for start in range(0, len(rows), per_request):
            chunk = rows[start : start + per_request]
            records = [{c: row[c] for c in self.columns} for row in chunk]
            self.num_requests += 1
            try:
                answer = self.session.post(f"{self.url}/predict", json={"records": records}, timeout=60)
                if answer.status_code != 200:
                    self.failures.append(f"/predict {answer.status_code}: {answer.text[:200]}")
                    continue
                body = answer.json()
                request_id = body["request_id"]  # issued by the endpoint: every replica knows it
                if body.get("route") == "champion":
                    self.champion_versions.append(int(body["model_version"]))
                labels = [row[self.label] for row in chunk]
                sent = self.session.post(
                    f"{self.url}/feedback", json={"request_id": request_id, "labels": labels}, timeout=60
                )
                if sent.status_code >= 300:
                    self.failures.append(f"/feedback {sent.status_code}: {sent.text[:200]}")
            except requests.RequestException as e:
                self.failures.append(f"{type(e).__name__}: {e}")


class ClosedLoop:
    """Endpoint + monitor up, then stationary traffic, drifted traffic, the retrain, the report.

    The demo's traffic comes from its generator; ``reference_rows`` and
    ``shifted_rows`` (each ``num_rows -> table`` with the schema's columns and
    labels) run the same loop on any other data.
    """

    def __init__(
        self,
        config: ProjectConfig,
        dashboard_url: str | None,
        say: Say,
        *,
        reference_rows: Callable[[int], pa.Table] | None = None,
        shifted_rows: Callable[[int], pa.Table] | None = None,
    ) -> None:
        from raymlops.runtime import free_port_or_next

        port = free_port_or_next(config.serving.host, config.serving.port)
        self.config = config.model_copy(update={"serving": config.serving.model_copy(update={"port": port})})
        self.dashboard_url = dashboard_url
        self.say = say
        self.window = config.monitoring.window_size
        self.stationary_rows = 2 * self.window
        self.url: str | None = None
        self.traffic: Traffic | None = None
        self.actor: Any = None
        self.job: Any = None  # the retrain JobRecord once it ended
        self.report_path: str | None = None
        self._seed = 1000
        self._next_id = 10_000_000  # production customers get ids the training data never had
        self._reference_rows, self._shifted_rows = reference_rows, shifted_rows

    @property
    def served(self) -> list[int]:
        """The champion versions the endpoint answered with, each run of equal answers once."""
        versions = self.traffic.champion_versions if self.traffic else []
        return [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]

    def start(self) -> str:
        from raymlops import monitor
        from raymlops.errors import MonitoringError
        from raymlops.pipeline._stages import deploy

        endpoint = deploy(self.config, jobs_address=self.dashboard_url, say=self.say)
        self.actor = monitor.get(self.config)
        if self.actor is None:
            raise MonitoringError(
                "the closed-loop demo needs the drift monitor; set monitoring.enabled: true"
            )
        self.url = endpoint.url
        self.traffic = Traffic(endpoint.url, self.config)
        self.say(f"endpoint {endpoint.url}")
        return endpoint.url

    def serving_version(self) -> int | None:
        import requests

        try:
            champion = requests.get(f"{self.url}/model", timeout=10).json().get("champion")
        except (requests.RequestException, ValueError):
            return None
        return int(champion["version"]) if champion else None

    def status(self) -> dict[str, Any]:
        import ray

        result: dict[str, Any] = ray.get(self.actor.status.remote())
        return result

    def stationary(self) -> tuple[bool, str]:
        assert self.traffic is not None
        before = self.status()["num_windows"]
        self.traffic.send(
            self._reference_rows(self.stationary_rows)
            if self._reference_rows
            else self.rows(self.stationary_rows)
        )
        judged = self._wait(lambda: self.status()["num_windows"] >= before + 2, "two stationary windows")
        st = self.status()
        detail = (
            f"{st['num_windows'] - before} windows judged, {st['num_drifted_windows']} drifted, "
            f"{st['num_triggers']} retrain triggers; {len(self.traffic.failures)} failed requests"
        )
        self.say(detail)
        return judged and st["num_triggers"] == 0 and not self.traffic.failures, detail

    def drift(self) -> tuple[bool, str]:
        assert self.traffic is not None
        sent = 0
        for _ in range(8):  # the policy needs consecutive_windows drifted windows (or a live-metric drop)
            self.traffic.send(self.drifted(self.window))
            sent += self.window
            if self._wait(lambda: self.status()["num_triggers"] >= 1, "a retrain trigger", timeout_s=None):
                break
        st = self.status()
        self.say(f"monitor: {st['last_decision']}")
        if st.get("last_performance"):
            perf = st["last_performance"]
            metric, value, verdict = perf["metric"], perf["value"], perf["verdict"]
            baseline = perf.get("baseline")
            shown = f"{baseline:.3f}" if isinstance(baseline, float) else "-"
            self.say(f"live {metric} {value:.3f}, holdout {shown}: {verdict}")
        jobs = st["jobs"]
        if self.traffic.failures:
            self.say(f"{len(self.traffic.failures)} failed requests, e.g. {self.traffic.failures[0]}")
        detail = (
            f"{sent} drifted rows; retrain job {jobs[-1]['submission_id']} triggered: {jobs[-1]['reason']}"
            if jobs
            else f"{sent} drifted rows sent and no retrain was triggered"
        )
        return st["num_triggers"] == 1 and not self.traffic.failures, detail

    def retrain(self) -> tuple[bool, str]:
        from raymlops.monitor import JobRecord

        assert self.traffic is not None
        if not self.status()["jobs"]:
            return False, "no retrain job was triggered"
        deadline = time.monotonic() + JOB_TIMEOUT_S
        seen_status = None
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            # keep real traffic flowing while the job trains, gates, canaries and promotes: a few
            # requests a second, enough for the canary's judge to reach canary.min_requests
            for _ in range(RETRAIN_REQUESTS_PER_TICK):
                self.traffic.send(self.drifted(RECORDS_PER_REQUEST))
            job = self.status()["jobs"][-1]
            if job["status"] != seen_status:
                seen_status = job["status"]
                self.say(f"job {job['submission_id']}: {job['status'] or job['stage']}")
            if job["stage"] == "done":
                break
            time.sleep(0.5)
        self.job = JobRecord(**job) if job else None
        if self.job is None or self.job.stage != "done":
            if self.job is not None and self.job.stage == "pending":  # the Jobs API never took it
                return False, (
                    f"the retrain job {self.job.submission_id} was not submitted in {JOB_TIMEOUT_S:.0f} s "
                    f"({self.job.attempts} attempts; last error: {self.job.last_error}); the monitor keeps "
                    "retrying while the drift lasts (`raymlops monitor status`)"
                )
            return False, f"the retrain job did not end within {JOB_TIMEOUT_S:.0f} s"
        switched = False
        if self.job.outcome == "promoted":

            def answers_new() -> bool:
                assert self.traffic is not None
                self.traffic.send(self.drifted(RECORDS_PER_REQUEST))
                return bool(self.traffic.champion_versions) and (
                    self.traffic.champion_versions[-1] == self.job.model_version
                )

            switched = self._wait(answers_new, "the endpoint to answer with the new version")
        st = self.status()
        detail = (
            f"job {self.job.submission_id} {self.job.outcome}: {self.job.detail}; endpoint served "
            f"{' → '.join(map(str, self.served))}; {self.traffic.num_requests} requests, "
            f"{len(self.traffic.failures)} failed; {st['num_triggers']} retrain job(s) in all"
        )
        self.say(detail)
        for failure in self.traffic.failures[:5]:
            self.say(f"failed request: {failure}")
        ok = switched and not self.traffic.failures and st["num_triggers"] == 1
        return ok, detail

    def report(self) -> str | None:
        from raymlops import monitor

        page = monitor.write_report(self.config)
        for line in page.table.splitlines():
            self.say(line)
        self.report_path = page.html_path
        return page.html_path

    def stop(self) -> None:
        """Let the replicas' last log flush reach the monitor, then stop it; Ray's stop ends Serve.

        ``serve.shutdown()`` is skipped on purpose: with the HAProxy ingress it
        waits out a 30 s timeout here, and stopping the embedded Ray stops Serve anyway.
        """
        from raymlops import monitor

        time.sleep(2 * self.config.serving.log_flush_interval_s + 1)
        monitor.stop(self.config)

    def rows(
        self, num_rows: int, *, shift: dict[str, float] | None = None, concept_shift: float = 0.0
    ) -> pa.Table:
        from raymlops.data import generate_demo_data

        table = generate_demo_data(
            num_rows, seed=self._seed, shift=shift, concept_shift=concept_shift, id_offset=self._next_id
        )
        self._seed += 1
        self._next_id += num_rows
        return table

    def drifted(self, num_rows: int) -> pa.Table:
        if self._shifted_rows is not None:
            return self._shifted_rows(num_rows)
        return self.rows(num_rows, shift=SHIFT, concept_shift=CONCEPT_SHIFT)

    def _wait(self, predicate: Callable[[], bool], what: str, *, timeout_s: float | None = 60.0) -> bool:
        """Poll ``predicate`` about once a second; ``None`` waits two monitor checks."""
        limit = timeout_s if timeout_s is not None else 2 * self.config.monitoring.check_interval_s + 5
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(1.0)
        if timeout_s is not None:
            self.say(f"timed out after {limit:.0f} s waiting for {what}")
        return False
