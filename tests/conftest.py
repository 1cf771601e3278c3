"""Shared fixtures: one local Ray cluster per test session, configs under tmp_path."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raymlops.config import ProjectConfig, parse_config
from raymlops.data._demo import demo_schema


def demo_raw_config(home: Path, **sections: Any) -> dict[str, Any]:
    """A small config over the demo schema, with its storage home under ``home``."""
    raw: dict[str, Any] = {
        "name": "churn",
        "storage": {"home": str(home)},
        "data": {"schema": demo_schema()},
    }
    for key, value in sections.items():
        if key == "data":
            raw["data"] = {**raw["data"], **value}
        else:
            raw[key] = copy.deepcopy(value)
    return raw


@pytest.fixture
def make_config(tmp_path: Path):
    """Build a ``ProjectConfig`` whose home is this test's tmp_path."""

    def make(**sections: Any) -> ProjectConfig:
        return parse_config(demo_raw_config(tmp_path / "home", **sections))

    return make


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray for every integration test: 4 logical CPUs on 2 cores, no dashboard.

    It gets the same environment as ``runtime.start`` gives an embedded head (Serve's
    HAProxy ingress, Ray Train's settings for one node).
    ``ray.shutdown()`` stops exactly the GCS, raylet and workers this process started.
    """
    import os

    import ray

    from raymlops.runtime import local_ray_env

    home = tmp_path_factory.mktemp("ray-session") / "home"
    for key, value in local_ray_env(parse_config(demo_raw_config(home))).items():
        os.environ.setdefault(key, value)

    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        metrics_port = free.getsockname()[1]
    os.environ["RAYMLOPS_TEST_METRICS_PORT"] = str(metrics_port)  # tests scrape Prometheus text here
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        namespace="raymlops-tests",
        logging_level="WARNING",
        _metrics_export_port=metrics_port,
    )
    from raymlops.runtime import _configure_ray_data

    _configure_ray_data()
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[str]:
    """A real `ray start --head` (dashboard and Jobs API on 127.0.0.1) for the session; its URL."""
    from tests.helpers.head import running_head

    yield from running_head()


@pytest.fixture(scope="session")
def other_ray() -> Iterator[str]:
    """Another Ray on this machine (a plain `ray start --head`), as on many laptops; its GCS address."""
    from tests.helpers.head import foreign_head

    yield from foreign_head()


TRAINING = {"num_workers": 1, "epochs": 3, "cpus_per_worker": 0.5}


@dataclasses.dataclass(frozen=True)
class TrainedPair:
    """A good and a deliberately poor training run in one storage home, shared by the session.

    Training is the slowest setup step; the gate, registry, serve and reliability
    modules each register these two runs under their own model name instead of
    training their own (MLflow runs live in the home, so every config built by
    ``raw`` uses the same one).
    """

    folder: Path
    prepared: Any
    good: Any
    poor: Any

    def raw(self, name: str, **sections: Any) -> dict[str, Any]:
        raw = demo_raw_config(self.folder / "home", **{"training": TRAINING, **sections})
        raw["name"] = name
        return raw


@pytest.fixture(scope="session")
def trained_pair(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> TrainedPair:
    import pyarrow.csv as pacsv

    from raymlops import data, train

    folder = tmp_path_factory.mktemp("trained")
    cfg = parse_config(demo_raw_config(folder / "home", training=TRAINING))
    pacsv.write_csv(data.generate_demo_data(3000, seed=41), folder / "d.csv")
    prepared = data.prepare(data.ingest(str(folder / "d.csv"), cfg), cfg)
    good = train.run(prepared, cfg)
    # A model that has barely left its random initialisation: clearly worse on the holdout.
    poor = train.run(prepared, cfg, overrides={"learning_rate": 1e-6, "epochs": 1})
    return TrainedPair(folder, prepared, good, poor)
