"""Registering a trained model: the pyfunc bundle, lineage, aliases, the models commands."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from raymlops import registry
from raymlops.cli import main
from raymlops.config import parse_config
from raymlops.errors import ConfigError, VersionNotFoundError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture(scope="module")
def trained(trained_pair, tmp_path_factory):
    """The session's good training run, registered twice (versions 1 and 2) as ``registered``."""
    folder = tmp_path_factory.mktemp("registry")
    raw = trained_pair.raw("registered")
    cfg = parse_config(raw)
    (folder / "raymlops.yaml").write_text(yaml.safe_dump(raw))
    result = trained_pair.good
    first = registry.register(result, cfg)
    second = registry.register(result, cfg)
    return cfg, result, first, second, folder


def test_pyfunc_in_a_process_without_ray_predicts_like_the_in_process_model(trained, tmp_path):
    cfg, result, first, _, _ = trained
    rows = result.prepared.test.to_pandas().head(50)  # raw rows: label, id and time included
    rows.to_parquet(tmp_path / "rows.parquet")
    expected = registry.load_predictor(cfg, f"{cfg.name}/{first.version}").predict_frame(rows)
    code = (
        "import sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({cfg.mlflow_tracking_uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{cfg.name}/{first.version}')\n"
        f"out = model.predict(pd.read_parquet({str(tmp_path / 'rows.parquet')!r}))\n"
        f"out.to_parquet({str(tmp_path / 'out.parquet')!r})\n"
        "print('ray' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert set(got["prediction"]) <= {0, 1} and got["probability"].between(0, 1).all()


def test_pyfunc_names_the_rule_and_column_of_a_bad_row(trained):
    cfg, result, first, _, _ = trained
    import mlflow

    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(first.uri)
    rows = result.prepared.test.to_pandas().head(3)
    rows.loc[1, "plan"] = "platinum"
    with pytest.raises(Exception, match="row 1: category:plan"):
        model.predict(rows)


def test_lineage_goes_from_version_to_run_data_code_and_config(trained):
    cfg, result, first, _, _ = trained
    lineage = registry.lineage(cfg, f"{cfg.name}/{first.version}")
    version = result.prepared.dataset_version
    assert lineage.model.run_id == result.run_id and lineage.run_status == "FINISHED"
    assert (lineage.data_table_uri, lineage.data_version, lineage.data_digest) == (
        version.table_uri,
        version.version,
        version.digest,
    )
    assert lineage.config_hash and lineage.metrics["best_val_loss"] == pytest.approx(
        result.metrics["val_loss"]
    )
    assert "data        " in lineage.render() and version.digest[:12] in lineage.render()


def test_aliases_and_references(trained):
    cfg, _, first, second, _ = trained
    assert [v.version for v in registry.list_versions(cfg)] == [first.version, second.version]
    assert registry.resolve(cfg, cfg.name).version == second.version  # NAME alone: the newest
    moved = registry.set_alias(cfg, "challenger", first.version)
    assert moved.version == first.version and "challenger" in moved.aliases
    assert registry.model_uri(cfg, f"{cfg.name}@challenger") == f"models:/{cfg.name}@challenger"
    with pytest.raises(VersionNotFoundError, match=r"versions: 1, 2; aliases: challenger"):
        registry.resolve(cfg, f"{cfg.name}/9")
    with pytest.raises(VersionNotFoundError, match="no registered model named 'nope'"):
        registry.resolve(cfg, "nope/1")
    with pytest.raises(ConfigError, match="NAME, NAME/VERSION or NAME@ALIAS"):
        registry.parse_ref("churn:1")


def test_models_commands(trained, capsys):
    cfg, result, first, _, folder = trained
    config_path = str(folder / "raymlops.yaml")
    assert main(["models", "list", "-c", config_path]) == 0
    out = capsys.readouterr().out
    assert result.run_id in out and result.prepared.dataset_version.digest[:12] in out
    assert main(["models", "show", f"{cfg.name}/{first.version}", "-c", config_path]) == 0
    assert f"run         {result.run_id} (FINISHED)" in capsys.readouterr().out
    assert main(["models", "show", f"{cfg.name}/42", "-c", config_path]) == 2
    assert "does not exist" in capsys.readouterr().err
