"""Compositions of the stages: train, sweep, gate and promote, retrain, and the closed-loop demo.

This package decides the order of stages; it does no printing itself. Callers
pass ``step`` (a context manager factory that announces a step) and ``say``
(one line of detail), so the CLI, a Ray job and a test can each report their way.
"""

from pathlib import Path

from raymlops.pipeline._demo import DemoSummary, demo
from raymlops.pipeline._stages import (
    PromotionOutcome,
    RetrainOutcome,
    TrainOutcome,
    gate_and_promote,
    retrain,
    train_and_register,
    tune_and_register,
)

__all__ = [
    "DemoSummary",
    "PromotionOutcome",
    "RetrainOutcome",
    "TrainOutcome",
    "demo",
    "gate_and_promote",
    "packaged_demo_config",
    "retrain",
    "train_and_register",
    "tune_and_register",
]


def packaged_demo_config() -> Path:
    """The demo config shipped inside the package (``configs/demo.yaml`` links to it)."""
    return Path(__file__).parent.parent / "demo.yaml"
