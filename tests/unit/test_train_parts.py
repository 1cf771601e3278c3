"""The task-specific parts of training and prediction, without Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raymlops import train
from raymlops.bundle import Predictor
from raymlops.config import parse_config
from raymlops.errors import ConfigError, InsufficientResourcesError
from raymlops.train._inputs import encode_batch
from raymlops.train._model import forward, make_loss
from tests.conftest import demo_raw_config


def _features(n: int, d: int) -> np.ndarray:
    column = np.empty(n, dtype=object)  # how a tensor column can arrive from Ray Data
    for i in range(n):
        column[i] = np.arange(d, dtype=np.float64) + i
    return column


@pytest.mark.parametrize(
    ("task", "classes", "labels", "expected", "dtype"),
    [
        ("binary", (0, 1), np.array([1, 0, 1]), [1.0, 0.0, 1.0], np.float32),
        ("multiclass", ("a", "b", "c"), np.array(["c", "a", "b"], dtype=object), [2, 0, 1], np.int64),
        ("regression", None, np.array([1.5, -2.0, 0.25]), [1.5, -2.0, 0.25], np.float32),
    ],
)
def test_batches_become_float_features_and_task_targets(task, classes, labels, expected, dtype):
    out = encode_batch({"features": _features(3, 4), "y_col": labels}, "y_col", classes, task)
    assert out["x"].dtype == np.float32 and out["x"].shape == (3, 4)
    assert out["y"].dtype == dtype and out["y"].tolist() == expected


@pytest.mark.parametrize(
    ("task", "output_dim", "target"),
    [
        ("binary", 1, torch.tensor([1.0, 0.0])),
        ("multiclass", 3, torch.tensor([2, 0])),
        ("regression", 1, torch.tensor([0.5, -1.0])),
    ],
)
def test_loss_and_output_shapes_agree_per_task(task, output_dim, target):
    model = train.build_model(4, output_dim, (8,), 0.0)
    out = forward(model, torch.randn(2, 4), task)
    loss = make_loss(task)(out, target)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_output_dim_follows_the_task(tmp_path):
    multiclass = parse_config(demo_raw_config(tmp_path, model={"task": "multiclass"}))
    assert train.output_dim_for(multiclass, ("a", "b", "c")) == 3
    assert train.output_dim_for(parse_config(demo_raw_config(tmp_path)), (0, 1)) == 1


def test_gpu_config_asks_each_worker_for_a_gpu_and_uses_nccl(tmp_path):
    gpu = parse_config(demo_raw_config(tmp_path, training={"use_gpu": True, "num_workers": 4}))
    scaling = train.scaling_config(gpu)
    assert scaling.use_gpu and scaling.num_workers == 4
    assert scaling.resources_per_worker == {"CPU": 0.5, "GPU": 1}
    assert train.torch_config(gpu).backend == "nccl"
    cpu = parse_config(demo_raw_config(tmp_path))
    assert not train.scaling_config(cpu).use_gpu and train.torch_config(cpu).backend == "gloo"
    assert "GPU" not in train.scaling_config(cpu).resources_per_worker


def test_resource_check_names_the_shortfall(tmp_path):
    gpu = parse_config(demo_raw_config(tmp_path, training={"use_gpu": True, "num_workers": 2}))
    with pytest.raises(InsufficientResourcesError, match=r"needs 2 GPU\(s\), but the cluster has 0"):
        train.check_resources(gpu, {"CPU": 4.0})
    train.check_resources(gpu, {"CPU": 4.0, "GPU": 2.0})  # enough: no error
    custom = parse_config(demo_raw_config(tmp_path, training={"resources_per_worker": {"TPU": 1}}))
    with pytest.raises(InsufficientResourcesError, match="1 TPU per worker"):
        train.check_resources(custom, {"CPU": 4.0})


def test_bad_factory_is_a_config_error():
    with pytest.raises(ConfigError, match=r"No module named 'nope'"):
        train.build_model(3, 1, (4,), 0.0, factory="nope.mod:build")
    with pytest.raises(ConfigError, match="returned int"):
        train.build_model(3, 1, (4,), 0.0, factory="tests.unit.test_train_parts:not_a_model")


def not_a_model(**_kwargs):
    return 3


def test_predictor_postprocessing_per_task():
    def predictor(task, classes):
        p = Predictor.__new__(Predictor)
        p.task, p.classes = task, classes
        return p

    binary = predictor("binary", [0, 1])._postprocess(torch.tensor([[2.0], [-2.0]]))
    assert binary["prediction"].tolist() == [1, 0]
    assert binary["probability"].round(3).tolist() == [0.881, 0.119]
    multi = predictor("multiclass", ["a", "b", "c"])._postprocess(torch.tensor([[0.0, 3.0, 0.0]]))
    assert multi["prediction"].tolist() == ["b"] and multi.columns.tolist() == [
        "prediction",
        "probability_a",
        "probability_b",
        "probability_c",
    ]
    assert multi.iloc[0, 1:].sum() == pytest.approx(1.0)
    regression = predictor("regression", None)._postprocess(torch.tensor([[1.25]]))
    assert regression["prediction"].tolist() == [1.25]
