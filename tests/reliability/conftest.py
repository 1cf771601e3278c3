"""Fault injection against the real local Ray cluster: one endpoint for the package, and the figures.

Every test records what it measured (requests sent, answered, failed, logged,
seconds to recover) with the ``figures`` fixture; the run prints them in one
table at the end and writes them to ``$RAYMLOPS_RELIABILITY_JSON`` when that is
set. ``docs/RELIABILITY.md`` quotes the table of the last run.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from raymlops.config import parse_config
from tests.helpers.head import free_port

_FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict for this test's measured figures, reported at the end of the run."""
    return _FIGURES.setdefault(request.node.name, {})


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for test, values in _FIGURES.items():
        if values:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            terminalreporter.write_line(f"{test}: {shown}")
    path = os.environ.get("RAYMLOPS_RELIABILITY_JSON")
    if path:
        with open(path, "w") as out:
            json.dump(_FIGURES, out, indent=2, sort_keys=True, default=str)


@pytest.fixture(scope="package")
def reliable(trained_pair):
    """An endpoint with two fixed replicas, the good model as champion and the drift monitor running."""
    from raymlops import data, monitor, pipeline, registry
    from raymlops import serve as rserve

    cfg = parse_config(
        trained_pair.raw(
            "reliable",
            data={"table": "reliable"},  # its own training table: a retrain here appends to it
            serving={
                "port": free_port(),
                "num_replicas": 2,
                "max_batch_size": 16,
                "batch_wait_timeout_s": 0.01,
                "max_rows_per_request": 50,
                "max_request_bytes": 20_000,
                "log_flush_interval_s": 0.5,
            },
            monitoring={"window_size": 500, "min_window_size": 100, "check_interval_s": 2.0},
            retraining={"min_labelled_rows": 100, "canary_duration_s": 0},
        )
    )
    data.ingest(str(trained_pair.folder / "d.csv"), cfg)
    good = registry.register(trained_pair.good, cfg)
    assert pipeline.gate_and_promote(cfg, f"reliable/{good.version}", reason="first").promoted
    monitor.start(cfg, jobs_address=None)  # the shared test cluster has no Jobs API
    endpoint = rserve.deploy(cfg)
    yield cfg, endpoint, trained_pair.prepared.test.to_pandas().dropna().reset_index(drop=True)
    monitor.stop(cfg)
    rserve.shutdown(cfg)  # the application only: Serve itself stops with the session's Ray
