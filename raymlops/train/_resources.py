"""What a run needs from the cluster: workers and their resources, and the placement group left behind."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from raymlops.config import ProjectConfig
from raymlops.errors import InsufficientResourcesError
from raymlops.runtime import ENV_EMBEDDED

_LOG = logging.getLogger("raymlops.train")


_PLACEMENT_GROUP_FILE = "raymlops_placement_group"


def embedded_ray() -> bool:
    """True on an embedded one-node Ray that raymlops started (``runtime.local_ray_env``).

    Set in the environment before the head starts, so the driver, Tune trials
    and jobs submitted to that head all see it; a cluster of its own (``ray
    start``, KubeRay) does not, and keeps Ray Train's defaults.
    """
    return os.environ.get(ENV_EMBEDDED) == "1"


def trainer_class() -> Any:
    """``TorchTrainer``; on an embedded Ray, without its placement-group cleaner actor.

    Ray Train 2.60 starts a detached cleaner actor per fit that removes the
    workers' placement group if the controller dies without doing so (a
    placement group made by an actor lives as long as its job, not as long as
    the actor). On one node it costs one more process to start beside the
    workers and a 1 s stop (``benchmarks/README.md``), and it learns of the
    controller's death through the state API, so on a head without a dashboard
    it never removes anything. Its job is done here instead by rank 0 recording
    its placement group and the process that owns the fit in the run folder:
    ``run`` removes it after a failed fit, and a sweep removes it once the
    trial that ASHA stopped is dead (``release_placement_group``).
    """
    from ray.train.torch import TorchTrainer

    if not embedded_ray():
        return TorchTrainer
    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import (
            PlacementGroupCleanerCallback,
        )
    except ImportError:  # another Ray version: keep its cleaner
        return TorchTrainer

    class OneNodeTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self) -> list[Any]:
            callbacks: list[Any] = super()._create_default_callbacks()  # type: ignore[misc]
            return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]

    return OneNodeTorchTrainer


def placement_group_record(config: ProjectConfig, run_name: str) -> Path:
    """Where rank 0 of an embedded-head fit records its placement group (and the fit's owner)."""
    return config.home_path / "train" / run_name / _PLACEMENT_GROUP_FILE


def record_placement_group(path: str, owner_actor_id: str | None) -> None:
    """Rank 0 writes its worker group's placement group id, then the owner actor's id if any."""
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    if group is not None:
        from raymlops._internal.files import replace_text

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        lines = [group.id.hex(), *([owner_actor_id] if owner_actor_id else [])]
        replace_text(Path(path), "\n".join(lines))  # ``run`` and tests poll for it: never seen empty


def release_placement_group(record: Path, *, wait_for_owner: bool = False) -> bool:
    """Remove a fit's placement group that outlived its controller; True once nothing is left to do.

    Ray Train removes the group itself whenever its controller shuts down; a
    controller that died (killed, or killed with the Tune trial that owned it)
    leaves it holding its CPUs until the job ends, which starves every later
    fit, trial and retrain job on the embedded head. With ``wait_for_owner``,
    a group whose owner actor (a Tune trial) is still alive is left alone and
    False is returned: removing it under a live controller would only make it
    start a new worker group.
    """
    import ray

    try:
        group_id, *owner = record.read_text().split()
    except (OSError, ValueError):
        return True  # no worker group started
    entry = ray.util.placement_group_table().get(group_id)
    if not entry or entry.get("state") == "REMOVED":
        return True
    if wait_for_owner and owner and _actor_alive(owner[0]):
        return False
    # expected after every trial ASHA stops: its controller is killed with the group still placed
    remove_group(group_id, "left behind by a fit whose controller died")
    return True


def remove_group(group_id: str, why: str) -> None:
    """Remove a placement group by its hex id (logged at INFO with ``why``)."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(group_id)))
    _LOG.info("removed placement group %s, %s", group_id, why)


def _actor_alive(actor_id: str) -> bool:
    """Whether an actor is alive, read from the GCS (the state API needs a dashboard)."""
    from ray._private import state

    info = state.actors(actor_id)
    return bool(info) and info.get("State") != "DEAD"


def scaling_config(config: ProjectConfig) -> Any:
    """Workers and what each holds: ``cpus_per_worker`` CPUs, one GPU each with ``use_gpu``."""
    from ray.train import ScalingConfig

    training = config.training
    resources = {"CPU": training.cpus_per_worker, **training.resources_per_worker}
    if training.use_gpu:
        resources["GPU"] = 1
    return ScalingConfig(
        num_workers=training.num_workers, use_gpu=training.use_gpu, resources_per_worker=resources
    )


def torch_config(config: ProjectConfig) -> Any:
    """nccl between GPU workers, gloo between CPU workers (stated, not left to a default)."""
    from ray.train.torch import TorchConfig

    return TorchConfig(backend="nccl" if config.training.use_gpu else "gloo")


def check_resources(config: ProjectConfig, cluster: dict[str, float]) -> None:
    """Refuse, before starting anything, a run the cluster cannot hold (Ray would wait forever)."""
    training = config.training
    if training.use_gpu and cluster.get("GPU", 0) < training.num_workers:
        raise InsufficientResourcesError(
            f"training.use_gpu is true and training.num_workers is {training.num_workers}, so the run "
            f"needs {training.num_workers} GPU(s), but the cluster has {cluster.get('GPU', 0):g}. "
            "Set training.use_gpu: false to train on CPUs, lower num_workers, or attach to a cluster "
            "with GPUs (RAY_ADDRESS)."
        )
    need_cpu = training.num_workers * training.cpus_per_worker
    if need_cpu > cluster.get("CPU", 0):
        raise InsufficientResourcesError(
            f"training needs {need_cpu:g} CPUs (num_workers {training.num_workers} x cpus_per_worker "
            f"{training.cpus_per_worker:g}) but the cluster has {cluster.get('CPU', 0):g}. Lower "
            "training.cpus_per_worker or num_workers, or raise runtime.num_cpus."
        )
    for name, amount in training.resources_per_worker.items():
        if name != "CPU" and cluster.get(name, 0) < amount * training.num_workers:
            raise InsufficientResourcesError(
                f"training.resources_per_worker asks for {amount:g} {name} per worker but the cluster "
                f"has {cluster.get(name, 0):g} in total"
            )
