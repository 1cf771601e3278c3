"""Locked-down defaults: loopback binds, secrets kept out of MLflow params."""

from __future__ import annotations

from pathlib import Path

from raymlops._internal.tracking import config_params, redacted
from raymlops.config import parse_config
from tests.conftest import demo_raw_config


def test_everything_the_embedded_head_opens_binds_to_loopback_by_default(tmp_path):
    cfg = parse_config(demo_raw_config(tmp_path))
    assert cfg.runtime.dashboard_host == "127.0.0.1"  # the dashboard and with it the Jobs API
    assert cfg.serving.host == "127.0.0.1"
    assert cfg.serving.max_request_bytes <= 4_000_000 and cfg.serving.max_rows_per_request > 0


def test_a_password_in_the_tracking_uri_never_reaches_mlflow_params(tmp_path):
    raw = demo_raw_config(Path(tmp_path), serving={"auth_token_env": "RAYMLOPS_TOKEN"})
    raw["storage"]["mlflow_tracking_uri"] = "postgresql://mlflow:pa55word@db.internal:5432/mlflow"
    params = config_params(parse_config(raw))
    assert "pa55word" not in repr(params)
    assert params["storage.mlflow_tracking_uri"] == "postgresql://mlflow:***@db.internal:5432/mlflow"
    # the endpoint's token is configured by the name of a variable; its value is read by the
    # replica at start-up and is never part of the config (tests/integration/test_serve.py
    # checks it is in no Ray log either)
    assert params["serving.auth_token_env"] == "RAYMLOPS_TOKEN"


def test_redacted_leaves_uris_without_a_password_alone():
    assert redacted("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert redacted("http://mlflow:5000") == "http://mlflow:5000"
    assert redacted("https://user@host/x") == "https://user@host/x"
    assert redacted("http://[broken") == "<unparseable URI>"
