"""Config validation: every mistake is a ConfigError naming the key, the value and what is allowed."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from raymlops.config import load_config, parse_config
from raymlops.data._demo import demo_schema
from raymlops.errors import ConfigError
from tests.conftest import demo_raw_config

REPO = Path(__file__).resolve().parents[2]


def _error(raw: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value


def test_demo_config_loads_and_matches_the_generator(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.name == "churn"
    assert cfg.data.schema.model_dump(mode="json") == parse_config(
        demo_raw_config(tmp_path)
    ).data.schema.model_dump(mode="json")
    assert cfg.training.num_workers == 2


def test_unknown_key_names_path_and_allowed_keys(tmp_path):
    raw = demo_raw_config(tmp_path, training={"num_worker": 2})
    err = _error(raw)
    assert err.paths == ["training.num_worker"]
    assert "unknown key 'num_worker'" in str(err)
    assert "did you mean 'num_workers'?" in str(err)
    assert "allowed keys here:" in str(err) and "epochs" in str(err)


def test_unknown_top_level_key(tmp_path):
    raw = demo_raw_config(tmp_path)
    raw["trainig"] = {}
    err = _error(raw)
    assert err.paths == ["trainig"]
    assert "did you mean 'training'?" in str(err)


def test_wrong_type_names_value(tmp_path):
    err = _error(demo_raw_config(tmp_path, training={"epochs": "ten"}))
    assert err.paths == ["training.epochs"]
    assert "got 'ten'" in str(err) and "valid integer" in str(err)


def test_out_of_range_number(tmp_path):
    err = _error(demo_raw_config(tmp_path, training={"learning_rate": -0.1}))
    assert err.paths == ["training.learning_rate"]
    assert "got -0.1; must be greater than 0" in str(err)


def test_min_replicas_above_max_replicas(tmp_path):
    err = _error(demo_raw_config(tmp_path, serving={"min_replicas": 3, "max_replicas": 2}))
    assert err.paths == ["serving.min_replicas"]
    assert "min_replicas (3) must be <= max_replicas (2)" in str(err)


def test_missing_label_column(tmp_path):
    raw = demo_raw_config(tmp_path)
    del raw["data"]["schema"]["label"]
    err = _error(raw)
    assert err.paths == ["data.schema.label"]
    assert "required key is missing" in str(err)
    assert "classes, dtype, name" in str(err)


def test_literal_lists_allowed_values(tmp_path):
    err = _error(demo_raw_config(tmp_path, data={"on_invalid": "drop"}))
    assert err.paths == ["data.on_invalid"]
    assert "got 'drop'; must be 'fail' or 'quarantine'" in str(err)


def test_union_field_merges_branches(tmp_path):
    err = _error(demo_raw_config(tmp_path, serving={"num_replicas": 0}))
    assert err.paths == ["serving.num_replicas"]
    assert "greater than or equal to 1 or must be 'auto'" in str(err)


def test_every_problem_is_reported_at_once(tmp_path):
    raw = demo_raw_config(tmp_path, training={"epochs": 0, "batch_size": "x"}, split={"seed": "s"})
    err = _error(raw)
    assert sorted(err.paths) == ["split.seed", "training.batch_size", "training.epochs"]
    assert "3 problems" in str(err)


def test_feature_list_index_in_path(tmp_path):
    raw = demo_raw_config(tmp_path)
    raw["data"]["schema"]["features"][2]["kind"] = "numerc"
    err = _error(raw)
    assert err.paths == ["data.schema.features[2].kind"]
    assert "must be 'numeric' or 'categorical'" in str(err)


def test_categorical_without_allowed_values(tmp_path):
    raw = demo_raw_config(tmp_path)
    del raw["data"]["schema"]["features"][9]["allowed"]
    err = _error(raw)
    assert err.paths == ["data.schema.features[9].allowed"]


def test_slice_column_must_be_declared(tmp_path):
    raw = demo_raw_config(tmp_path)
    raw["data"]["schema"]["slice_columns"] = ["planet"]
    err = _error(raw)
    assert err.paths == ["data.schema.slice_columns"]
    assert "'planet' is not a declared feature" in str(err)


def test_split_fractions_must_sum_to_one(tmp_path):
    err = _error(demo_raw_config(tmp_path, split={"train_fraction": 0.8}))
    assert "must be 1.0, got 1.1" in str(err)


def test_critical_feature_must_exist(tmp_path):
    err = _error(demo_raw_config(tmp_path, monitoring={"critical_features": ["agee"]}))
    assert err.paths == ["monitoring.critical_features"]


def test_classification_rejects_float_label(tmp_path):
    raw = demo_raw_config(tmp_path)
    raw["data"]["schema"]["label"]["dtype"] = "float64"
    err = _error(raw)
    assert err.paths == ["data.schema.label.dtype"]
    assert "model.task: regression" in str(err)


def test_unknown_tunable(tmp_path):
    err = _error(
        demo_raw_config(tmp_path, tuning={"search_space": {"lr": {"type": "uniform", "low": 0, "high": 1}}})
    )
    assert "cannot tune 'lr'" in str(err) and "learning_rate" in str(err)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_config_is_frozen(tmp_path):
    cfg = parse_config(demo_raw_config(tmp_path))
    with pytest.raises(ValueError):
        cfg.training.epochs = 3  # type: ignore[misc]


def test_env_overrides_home_and_address(tmp_path, monkeypatch):
    cfg = parse_config(demo_raw_config(tmp_path / "a"))
    monkeypatch.setenv("RAYMLOPS_HOME", str(tmp_path / "b"))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cfg.home_path == tmp_path / "b"
    assert cfg.table_uri == str(tmp_path / "b" / "data" / "training")
    assert cfg.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    assert cfg.ray_address == "10.0.0.1:6379"


def test_config_error_survives_pickling(tmp_path):
    err = _error(demo_raw_config(tmp_path, training={"epochs": 0}))
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err) and clone.paths == err.paths


def test_demo_schema_is_valid_on_its_own():
    schema = copy.deepcopy(demo_schema())
    assert len(schema["features"]) == 12


def test_grid_and_choice_dimensions_need_values(tmp_path):
    err = _error(demo_raw_config(tmp_path, tuning={"search_space": {"learning_rate": {"type": "grid"}}}))
    assert err.paths == ["tuning.search_space.learning_rate.values"]
    assert "a 'grid' dimension needs a non-empty 'values' list" in str(err)


def test_search_space_becomes_tune_samplers(tmp_path):
    from raymlops.tune import search_space

    cfg = parse_config(
        demo_raw_config(
            tmp_path,
            tuning={
                "search_space": {
                    "learning_rate": {"type": "grid", "values": [0.1, 0.01]},
                    "hidden_sizes": {"type": "choice", "values": [[8], [16, 8]]},
                    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
                }
            },
        )
    )
    space = search_space(cfg.tuning.search_space)
    assert space["learning_rate"] == {"grid_search": [0.1, 0.01]}
    assert space["hidden_sizes"].categories == [[8], [16, 8]]
    assert (space["dropout"].lower, space["dropout"].upper) == (0.0, 0.5)


OBJECT_STORE_HOMES = ["s3://bucket/home", "gs://bucket/home", "abfss://c@a.dfs.core.windows.net/h"]


@pytest.mark.parametrize("home", OBJECT_STORE_HOMES)
def test_an_object_store_home_derives_every_location_and_never_becomes_a_local_folder(tmp_path, home):
    config = parse_config(
        demo_raw_config(
            tmp_path, storage={"home": home + "/", "mlflow_tracking_uri": "http://127.0.0.1:5000"}
        )
    )
    places = config.locations
    assert config.home_uri == home and places.remote
    uris = [
        config.table_uri,
        config.quarantine_uri,
        config.inference_log_uri,
        config.feedback_uri,
        places.train_uri,
        places.tune_uri,
        places.alias_history_uri(),
        places.alias_lock_uri("churn"),
        places.monitor_state_uri,
        places.windows_uri,
        places.monitor_config_uri,
        places.report_uri,
        places.job_uri("raymlops-retrain-x"),
        places.retrain_uri("manual-1"),
    ]
    assert all(u.startswith(home + "/") for u in uris), uris
    assert config.table_uri == f"{home}/data/training"
    assert config.mlflow_artifact_uri is None  # the server chooses
    assert "://" not in str(config.journal_dir) and config.journal_dir.is_absolute()
    assert not (tmp_path / home.split("://")[0]).exists() and not Path(home.split("://")[0] + ":").exists()


@pytest.mark.parametrize("tracking", [None, "sqlite:///tmp/mlflow.db", "/tmp/mlruns", "file:///tmp/mlruns"])
def test_a_remote_home_with_local_tracking_names_both_keys(tmp_path, tracking):
    storage = {"home": "s3://bucket/home", **({"mlflow_tracking_uri": tracking} if tracking else {})}
    err = _error(demo_raw_config(tmp_path, storage=storage))
    assert err.paths == ["storage.mlflow_tracking_uri"]
    assert "storage.home is s3://bucket/home" in str(err) and "MLflow server" in str(err)


def test_an_unknown_scheme_or_a_bucketless_home_is_a_config_error(tmp_path):
    err = _error(demo_raw_config(tmp_path, storage={"home": "hdfs://nn/home"}))
    assert err.paths == ["storage.home"] and "s3://" in str(err) and "abfss://" in str(err)
    err = _error(demo_raw_config(tmp_path, storage={"home": "s3://", "mlflow_tracking_uri": "http://h:5000"}))
    assert err.paths == ["storage.home"] and "names no bucket" in str(err)


def test_a_file_uri_home_is_a_local_folder_and_an_environment_home_needs_a_server(tmp_path, monkeypatch):
    config = parse_config(demo_raw_config(tmp_path, storage={"home": f"file://{tmp_path}/home"}))
    assert config.home_path == tmp_path / "home" and config.home_uri == str(tmp_path / "home")
    assert config.mlflow_artifact_uri == (tmp_path / "home" / "mlartifacts").as_uri()
    monkeypatch.setenv("RAYMLOPS_HOME", "s3://bucket/home")
    assert config.table_uri == "s3://bucket/home/data/training"
    with pytest.raises(ConfigError, match=r"storage\.mlflow_tracking_uri") as info:
        _ = config.mlflow_tracking_uri
    assert "storage.home is s3://bucket/home" in str(info.value)
