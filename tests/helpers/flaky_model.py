"""A model factory (``model.factory``) that is sound offline and fails on live traffic.

Trained and gated like any model, it answers the holdout exactly as the plain
MLP would, so it passes the offline gate; inside a Ray Serve replica it raises
on every batch holding a row whose first input is large (most batches), the
failure a judged canary must catch.
"""

from __future__ import annotations

import torch

from raymlops.train import build_model

FACTORY = "tests.helpers.flaky_model:build"


def _in_a_replica() -> bool:
    try:
        from ray import serve

        serve.get_replica_context()
    except Exception:  # RayServeException outside a replica
        return False
    return True


class _FailsLive(torch.nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training and _in_a_replica() and bool((x[:, 0] > 0.5).any()):
            raise RuntimeError("flaky test model: refuses live inputs with a large first feature")
        return super().forward(x)


def build(
    *, input_dim: int, output_dim: int, hidden_sizes: tuple[int, ...], dropout: float
) -> torch.nn.Module:
    plain = build_model(input_dim, output_dim, tuple(hidden_sizes), dropout)
    return _FailsLive(*plain)  # the same layers: the plain MLP's weights load as they are
