"""The closed-loop demo: every stage on an embedded local Ray, with readable progress per step."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from raymlops.config import ProjectConfig
from raymlops.data import DatasetVersion
from raymlops.pipeline._loop import ClosedLoop
from raymlops.pipeline._stages import Say, Step, gate_and_promote, train_and_register, tune_and_register

if TYPE_CHECKING:
    from raymlops.evaluate import GateReport
    from raymlops.monitor import JobRecord
    from raymlops.registry import ModelVersion


@dataclasses.dataclass(frozen=True)
class DemoSummary:
    """What the demo did, for the final printout and for tests."""

    steps: tuple[tuple[str, bool, str], ...]
    versions: tuple[DatasetVersion, ...]
    models: tuple[ModelVersion, ...]
    gates: tuple[GateReport, ...]
    mlflow_tracking_uri: str
    quarantine_uri: str
    dashboard_url: str | None
    home: str
    endpoint_url: str | None = None
    serving: tuple[int, ...] = ()  # the versions the endpoint answered with, in order
    retrain_job: JobRecord | None = None
    drift_report_path: str | None = None
    num_requests: int = 0
    num_failed_requests: int = 0
    log_path: str | None = None  # Ray's and MLflow's own messages (a quiet run)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.steps)

    def render(self) -> str:
        lines = ["summary", f"  storage home    {self.home}"]
        for name, ok, detail in self.steps:
            lines.append(f"  {'ok ' if ok else 'FAILED'} {name}: {detail}")
        for v in self.versions:
            lines.append(
                f"  data version {v.version}: {v.num_rows} rows, digest {v.short_digest}, "
                f"+{v.num_rows_added} from {Path(v.source_uri).name}, {v.num_rows_quarantined} quarantined"
            )
        for m in self.models:
            lines.append(f"  model           {m.name} version {m.version} (MLflow run {m.run_id}, {m.uri})")
        for g in self.gates:
            verdict = "passed" if g.passed else "rejected"
            lines.append(
                f"  gate            version {g.challenger_version} {verdict} (report {g.report_id}; "
                f"`raymlops evaluate {g.model_name}/{g.challenger_version}`)"
            )
        if self.retrain_job is not None:
            job = self.retrain_job
            lines.append(f"  retrain job     {job.submission_id}: {job.outcome or job.stage} ({job.detail})")
        if self.serving:
            served = " → ".join(f"version {v}" for v in self.serving)
            lines.append(
                f"  endpoint        served {served}; {self.num_requests} requests, "
                f"{self.num_failed_requests} failed"
            )
        lines.append(f"  quarantine      {self.quarantine_uri}")
        if self.drift_report_path:
            lines.append(f"  drift report    {self.drift_report_path}")
        if self.mlflow_tracking_uri.startswith("sqlite:///"):
            lines.append(
                f"  MLflow UI       mlflow ui --backend-store-uri {self.mlflow_tracking_uri} --host 127.0.0.1"
            )
        if self.endpoint_url:
            lines.append(f"  endpoint        {self.endpoint_url} (stops with the demo; see `raymlops serve`)")
        if self.dashboard_url:
            lines.append(f"  Ray dashboard   {self.dashboard_url} (up while a command runs)")
        if self.log_path:
            lines.append(f"  Ray/MLflow log  {self.log_path} (their warnings and the workers' output)")
        lines.append(
            "  explore         raymlops models list; raymlops history; raymlops monitor status; "
            "raymlops monitor report"
        )
        return "\n".join(lines)


def demo(
    config: ProjectConfig,
    *,
    num_rows: int = 5000,
    step: Step | None = None,
    say: Say | None = None,
    quiet: bool = False,
) -> DemoSummary:
    """Run the whole closed loop on an embedded local Ray (or the configured cluster).

    ``quiet`` keeps Ray's and MLflow's messages off the terminal (in the log
    file the summary names), as the CLI does.

    Steps: generate demo data → ingest a clean batch (a Delta version) → ingest
    a batch with broken rows (quarantined with reasons) → prepare (split,
    preprocessors, reference profile) → train with Ray Train → sweep with Ray
    Tune → gate and promote → serve with Ray Serve, the drift monitor beside it
    → stationary traffic (no retrain) → drifted traffic with late labels → the
    monitor submits one retrain job, whose model passes the gate and takes
    over the endpoint → the drift report.

    Returns:
        A ``DemoSummary``; ``ok`` is True only when every step happened.
    """
    import pyarrow.csv as pacsv

    from raymlops import data, runtime

    step = step or _silent_step
    say = say or (lambda _m: None)
    runtime.ensure_home(config)
    home = config.home_uri
    demo_dir = config.home_path / "demo"  # generated CSVs: local files the driver reads
    demo_dir.mkdir(parents=True, exist_ok=True)
    done: list[tuple[str, bool, str]] = []
    versions: list[DatasetVersion] = []
    models: list[ModelVersion] = []
    gates: list[GateReport] = []

    with step("generate demo churn data"):
        clean_path = demo_dir / "customers.csv"
        messy_path = demo_dir / "customers_new.csv"
        pacsv.write_csv(data.generate_demo_data(num_rows, seed=1), clean_path)
        _write_messy_batch(messy_path, num_rows=max(num_rows // 10, 50), id_offset=num_rows)
        say(f"{num_rows} clean rows → {clean_path}")
        say(f"{max(num_rows // 10, 50)} new rows, some broken → {messy_path}")
        done.append(("generate", True, f"{num_rows} rows + a batch with broken rows"))

    with runtime.session(config, quiet=quiet) as rt:
        say(f"Ray dashboard: {rt.dashboard_url}")
        log_path = str(rt.chatter_log_path) if rt.chatter_log_path else None
        with step("ingest and validate (Delta version)"):
            # overwrite: every demo run starts from the same table contents (history is kept)
            v = data.ingest(str(clean_path), config, mode="overwrite", on_invalid="fail", progress=say)
            versions.append(v)
            done.append(("ingest", True, f"version {v.version}, {v.num_rows_added} rows"))

        with step("ingest a batch with broken rows (quarantine)"):
            v = data.ingest(str(messy_path), config, mode="append", on_invalid="quarantine", progress=say)
            versions.append(v)
            done.append(
                (
                    "quarantine",
                    v.num_rows_quarantined > 0,
                    f"version {v.version}: +{v.num_rows_added} rows, {v.num_rows_quarantined} quarantined",
                )
            )

        with step("prepare: split, fit preprocessors, reference profile"):
            prepared = data.prepare(versions[-1], config)
            train, validation, test = prepared.split_num_rows
            say(
                f"train {train} / validation {validation} / test {test} rows, "
                f"{prepared.feature_dim} model inputs"
            )
            done.append(("prepare", train > 0 and test > 0, f"{train}/{validation}/{test} rows"))

        with step("train with Ray Train and register in MLflow"):
            outcome = train_and_register(config, prepared=prepared, say=say)
            for line in outcome.render().splitlines():
                say(line)
            beats = (outcome.holdout_accuracy or 0) > (outcome.majority_baseline or 1)
            done.append(("train", beats, outcome.render().splitlines()[-1]))
            models.append(outcome.model_version)

        with step(f"sweep with Ray Tune ({config.tuning.num_samples} trials, ASHA) and register the best"):
            swept = tune_and_register(config, prepared=prepared, say=say)
            for line in swept.render().splitlines():
                say(line)
            done.append(("sweep", True, swept.render().splitlines()[0]))
            models.append(swept.model_version)

        with step("validation gate, then promote (the trained model, then the sweep's against it)"):
            champion = _gate_in_turn(config, (outcome.model_version, swept.model_version), gates, say)
            done.append(
                (
                    "gate",
                    champion is not None,
                    f"champion: version {champion}" if champion else "no model passed the gate",
                )
            )
        if champion is None:
            return _summary(config, done, versions, models, gates, rt.dashboard_url, home, log_path=log_path)

        loop = ClosedLoop(config, rt.dashboard_url, say)
        with step("serve the champion with Ray Serve; start the drift monitor"):
            url = loop.start()
            answers = loop.serving_version()
            done.append(("serve", answers == champion, f"{url} answers with version {answers}"))
        with step(f"stationary traffic: {loop.stationary_rows} rows with labels (no retrain expected)"):
            done.append(("stationary", *loop.stationary()))
        with step("drifted traffic with late labels until the monitor triggers a retrain"):
            done.append(("drift", *loop.drift()))
        with step("the retrain job: new data version, train, gate, canary, promote (traffic keeps flowing)"):
            done.append(("retrain", *loop.retrain()))
        with step("drift report (HTML)"):
            report_path = loop.report()
            done.append(("report", report_path is not None, report_path or "not written"))
        loop.stop()
        return _summary(
            config, done, versions, models, gates, rt.dashboard_url, home, loop=loop, log_path=log_path
        )


def _gate_in_turn(
    config: ProjectConfig, candidates: tuple[ModelVersion, ...], gates: list[GateReport], say: Say
) -> int | None:
    """Gate each candidate against the champion of that moment; promote those that pass."""
    from raymlops import registry

    for mv in candidates:
        ref = f"{mv.name}/{mv.version}"
        promotion = gate_and_promote(config, ref, reason="demo: newly trained model", say=say)
        assert promotion.report is not None
        gates.append(promotion.report)
        say(promotion.report.summary().splitlines()[0])
        say(f"version {mv.version} " + ("promoted to champion" if promotion.promoted else "rejected"))
    current = registry.champion(config)
    return current.version if current else None


def _summary(
    config: ProjectConfig,
    done: list[tuple[str, bool, str]],
    versions: list[DatasetVersion],
    models: list[ModelVersion],
    gates: list[GateReport],
    dashboard_url: str | None,
    home: str,
    *,
    loop: ClosedLoop | None = None,
    log_path: str | None = None,
) -> DemoSummary:
    from raymlops import registry

    if loop is not None and loop.job is not None and loop.job.model_version is not None:
        models = [*models, registry.resolve(config, f"{config.name}/{loop.job.model_version}")]
    return DemoSummary(
        steps=tuple(done),
        versions=tuple(versions),
        models=tuple(models),
        gates=tuple(gates),
        mlflow_tracking_uri=config.mlflow_tracking_uri,
        quarantine_uri=config.quarantine_uri,
        dashboard_url=dashboard_url,
        home=home,
        endpoint_url=loop.url if loop else None,
        serving=tuple(loop.served) if loop else (),
        retrain_job=loop.job if loop else None,
        drift_report_path=loop.report_path if loop else None,
        num_requests=loop.traffic.num_requests if loop and loop.traffic else 0,
        num_failed_requests=len(loop.traffic.failures) if loop and loop.traffic else 0,
        log_path=log_path,
    )


def _write_messy_batch(path: Path, *, num_rows: int, id_offset: int) -> None:
    """New customers where a few rows break the schema in the ways real exports do."""
    from raymlops import data

    frame = data.generate_demo_data(num_rows, seed=2, id_offset=id_offset).to_pandas()
    frame = frame.astype({"age": object, "income_k": object})
    frame.loc[0, "age"] = -4  # out of range
    frame.loc[1, "plan"] = "platinum"  # unknown category
    frame.loc[2, "income_k"] = "unknown"  # not a number
    frame.loc[3, "churned"] = None  # missing label
    frame.to_csv(path, index=False)


@contextlib.contextmanager
def _silent_step(_title: str) -> Iterator[None]:
    yield
