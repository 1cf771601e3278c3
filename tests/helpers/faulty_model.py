"""A model factory (plugged in through ``model.factory``) whose worker dies once, for real.

Rank 1 SIGKILLs its own process in the middle of epoch 2 of the first attempt.
A marker file makes it happen once per marker, so the resumed run finishes.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import torch

from raymlops.train import build_model

MARKER = Path(tempfile.gettempdir()) / "raymlops-test-kill-armed"
BATCHES_PER_EPOCH_FILE = Path(tempfile.gettempdir()) / "raymlops-test-kill-after"


class _DiesOnce(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, kill_after: int) -> None:
        super().__init__()
        self.inner = inner
        self.kill_after = kill_after
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            import ray.train

            if self.calls == self.kill_after and ray.train.get_context().get_world_rank() == 1:
                try:
                    MARKER.unlink()  # disarm first: the restarted worker must not die again
                except FileNotFoundError:
                    return self.inner(x)
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(x)


def build(input_dim: int, output_dim: int, hidden_sizes: tuple[int, ...], dropout: float) -> torch.nn.Module:
    kill_after = int(BATCHES_PER_EPOCH_FILE.read_text()) if BATCHES_PER_EPOCH_FILE.exists() else 10**9
    return _DiesOnce(build_model(input_dim, output_dim, hidden_sizes, dropout), kill_after)
