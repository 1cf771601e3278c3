"""A Ray Train controller killed mid-fit on the embedded head: the fit fails clearly and frees its CPUs.

On an embedded head raymlops runs Ray Train without its per-fit placement-group
cleaner actor (``train.trainer_class``); this is the fault that actor exists
for, so the test checks that raymlops' own release does its job.
"""

from __future__ import annotations

import threading
import time

import psutil
import pytest
import ray

from raymlops import train
from raymlops.config import parse_config
from raymlops.errors import TrainingError

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("ray_cluster")]


def _controllers(started_after: float) -> list[psutil.Process]:
    """Ray Train controllers started after a time, in this session's cluster (its raylet is our child).

    The title is ``ray::TrainController`` or ``ray::TrainController.run``, and an
    earlier fit's controller may still be exiting, hence the start time.
    """
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            title = process.cmdline()[0]
            if title.startswith("ray::TrainController") and process.create_time() >= started_after:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            continue
    return found


def test_a_killed_controller_fails_the_fit_and_releases_its_placement_group(trained_pair, figures):
    assert train.embedded_ray(), "the session cluster gets the embedded head's environment"
    training = {"num_workers": 1, "epochs": 500, "cpus_per_worker": 0.5, "early_stopping_patience": 0}
    cfg = parse_config(trained_pair.raw("killed-controller", training=training))
    run_name = f"killed-controller-{time.time_ns()}"
    record = train.placement_group_record(cfg, run_name)
    cpus_before = ray.available_resources().get("CPU", 0.0)
    outcome: dict[str, BaseException | object] = {}

    def fit() -> None:
        try:
            outcome["result"] = train.run(trained_pair.prepared, cfg, run_name=run_name)
        except BaseException as e:  # the assertion below says what came back
            outcome["error"] = e

    thread = threading.Thread(target=fit, daemon=True)
    started = time.time()
    thread.start()
    deadline = time.monotonic() + 120
    while not record.exists() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.2)
    assert record.exists(), f"rank 0 never recorded its placement group: {outcome}"
    group_id = record.read_text().split()[0]
    assert ray.util.placement_group_table()[group_id]["state"] == "CREATED"
    controllers = _controllers(started_after=started - 1)
    assert len(controllers) == 1, controllers
    killed_at = time.monotonic()
    controllers[0].kill()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the fit did not return after its controller died"

    error = outcome.get("error")
    assert isinstance(error, TrainingError), outcome
    assert run_name in str(error) and "resume" in str(error)
    assert ray.util.placement_group_table()[group_id]["state"] == "REMOVED"
    # the group's own resources (``bundle_group_<id>``) leave the cluster once its CPUs are back;
    # and the cluster's free CPUs are back to what they were before the fit
    while _group_resources(group_id) and time.monotonic() < killed_at + 30:
        time.sleep(0.2)  # the raylet reports freed resources asynchronously
    assert not _group_resources(group_id)
    while ray.available_resources().get("CPU", 0.0) < cpus_before and time.monotonic() < killed_at + 30:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0.0) >= cpus_before, "the failed fit kept CPUs"
    figures.update(
        fit_failed_after_s=round(time.monotonic() - killed_at, 1),
        cpus_free_before_and_after=(cpus_before, ray.available_resources().get("CPU", 0.0)),
    )


def _group_resources(group_id: str) -> list[str]:
    return [name for name in ray.cluster_resources() if group_id in name]
