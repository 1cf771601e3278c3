"""Deployment options from ``config.serving``: used by ``serve.run`` and written by ``serve build``.

No Ray import here, so building a Serve config file is instant and unit-testable.
"""

from __future__ import annotations

from typing import Any

from raymlops.config import ProjectConfig

DEPLOYMENT_NAME = "ModelServer"


def deployment_options(config: ProjectConfig) -> dict[str, Any]:
    """The ``@serve.deployment`` options from ``config.serving`` (also written by ``serve build``)."""
    serving = config.serving
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": serving.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": serving.num_cpus_per_replica},
        "logging_config": {"enable_access_log": serving.access_log, "log_level": "WARNING"},
        "health_check_period_s": 10.0,
        "graceful_shutdown_timeout_s": 10.0,
    }
    if serving.num_replicas == "auto":
        options["num_replicas"] = "auto"
        options["autoscaling_config"] = {
            "min_replicas": serving.min_replicas,
            "initial_replicas": max(serving.min_replicas, 1),
            "max_replicas": serving.max_replicas,
            "target_ongoing_requests": serving.target_ongoing_requests,
            "upscale_delay_s": serving.upscale_delay_s,
            "downscale_delay_s": serving.downscale_delay_s,
        }
    else:
        options["num_replicas"] = serving.num_replicas
    return options
