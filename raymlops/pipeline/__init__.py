"""Compositions of the stages: train, sweep, gate and promote, retrain, and the closed-loop demo.

This package decides the order of stages; it does no printing itself. Callers
pass ``step`` (a context manager factory that announces a step) and ``say``
(one line of detail), so the CLI, a Ray job and a test can each report their way.
"""

from pathlib import Path
from typing import Any

from raymlops.pipeline._canary import CanaryOutcome, CanaryWindow, judge, run_canary
from raymlops.pipeline._demo import DemoSummary, demo
from raymlops.pipeline._stages import (
    PipelineOutcome,
    PromotionOutcome,
    RetrainOutcome,
    TrainOutcome,
    deploy,
    gate_and_promote,
    retrain,
    run,
    train_and_register,
    tune_and_register,
)

__all__ = [
    "CanaryOutcome",
    "CanaryWindow",
    "DemoSummary",
    "PipelineOutcome",
    "PromotionOutcome",
    "RetrainOutcome",
    "TrainOutcome",
    "build_app",
    "demo",
    "deploy",
    "gate_and_promote",
    "judge",
    "packaged_demo_config",
    "retrain",
    "run",
    "run_canary",
    "train_and_register",
    "tune_and_register",
]


def packaged_demo_config() -> Path:
    """The demo config shipped inside the package (``configs/demo.yaml`` links to it)."""
    return Path(__file__).parent.parent / "demo.yaml"


def build_app(args: dict[str, Any]) -> Any:
    """Serve application builder that also starts the drift monitor (``monitoring.enabled``).

    For Serve config files and KubeRay's RayService, where no raymlops command
    runs beside the endpoint: ``import_path: raymlops.pipeline:build_app``,
    ``args: {config: path/to/raymlops.yaml}``. The monitor is detached and
    found again by name when the application is rebuilt.
    """
    from raymlops import monitor, serve
    from raymlops.config import load_config
    from raymlops.errors import ConfigError

    path = args.get("config")
    if not path:
        raise ConfigError("the Serve application needs args: {config: path/to/raymlops.yaml}")
    config = load_config(path)
    if config.monitoring.enabled:
        monitor.start(config)
    return serve.app(config)
