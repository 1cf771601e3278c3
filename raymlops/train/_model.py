"""The model: an MLP (or a ``model.factory`` by import path), its loss and forward pass per task."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig
from raymlops.errors import ConfigError

if TYPE_CHECKING:
    import torch


def build_model(
    input_dim: int, output_dim: int, hidden_sizes: tuple[int, ...], dropout: float, factory: str | None = None
) -> torch.nn.Module:
    """The MLP for the task, or the module returned by ``factory`` ("pkg.module:fn").

    A factory is called as ``fn(input_dim=…, output_dim=…, hidden_sizes=…, dropout=…)``.
    """
    import torch

    if factory:
        module_name, _, attr = factory.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                [("model.factory", f"cannot import {factory!r}: {e}; use 'package.module:function'")]
            ) from e
        model = fn(input_dim=input_dim, output_dim=output_dim, hidden_sizes=hidden_sizes, dropout=dropout)
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(
                [("model.factory", f"{factory!r} returned {type(model).__name__}, not a torch Module")]
            )
        return model
    layers: list[torch.nn.Module] = []
    width = input_dim
    for size in hidden_sizes:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = size
    layers.append(torch.nn.Linear(width, output_dim))
    return torch.nn.Sequential(*layers)


def output_dim_for(config: ProjectConfig, label_classes: tuple[Any, ...] | None) -> int:
    if config.model.task == "multiclass":
        return len(label_classes or ())
    return 1


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    import torch

    inner = getattr(model, "module", model)  # DDP wraps the model
    assert isinstance(inner, torch.nn.Module)
    return inner


def make_loss(task: str) -> torch.nn.Module:
    import torch

    if task == "binary":
        return torch.nn.BCEWithLogitsLoss()
    if task == "multiclass":
        return torch.nn.CrossEntropyLoss()
    return torch.nn.MSELoss()


def forward(model: torch.nn.Module, x: torch.Tensor, task: str) -> torch.Tensor:
    out = model(x)
    return out.squeeze(-1) if task in ("binary", "regression") else out
