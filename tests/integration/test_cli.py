"""The data commands, run in-process on the shared cluster (the CLI re-uses a running Ray)."""

from __future__ import annotations

import pytest
import yaml

from raymlops import data
from raymlops.cli import main
from tests.conftest import demo_raw_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "raymlops.yaml"
    path.write_text(yaml.safe_dump(demo_raw_config(tmp_path / "home")))
    return str(path)


def test_ingest_versions_show_profile(tmp_path, config_path, capsys):
    source = tmp_path / "c.csv"
    assert main(["data", "generate", str(source), "--rows", "300", "--seed", "3"]) == 0
    assert main(["data", "ingest", str(source), "-c", config_path]) == 0
    out = capsys.readouterr().out
    assert "validated 300 rows: 0 invalid" in out and "wrote version 0" in out

    assert main(["data", "versions", "-c", config_path]) == 0
    out = capsys.readouterr().out
    assert "version" in out and "+300" in out and "c.csv" in out

    assert main(["data", "show", "latest", "-c", config_path, "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "rows         300 (+300 added, 0 quarantined)" in out
    assert "premium" in out and "first 2 rows" in out

    assert main(["data", "profile", "0", "-c", config_path, "--json"]) == 0
    profile = data.ReferenceProfile.from_json(capsys.readouterr().out.strip().splitlines()[-1])
    assert profile.column("age").num_rows == profile.num_rows > 150


def test_user_mistakes_exit_2_with_a_message_not_a_traceback(tmp_path, config_path, capsys):
    frame = data.generate_demo_data(20, seed=1).to_pandas()
    frame.loc[0, "plan"] = "gold"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["data", "ingest", str(tmp_path / "bad.csv"), "-c", config_path]) == 2
    err = capsys.readouterr().err
    assert "[category] column 'plan': 1 row(s)" in err and "Traceback" not in err

    assert main(["data", "show", "9", "-c", config_path]) == 2
    assert "ingest data first" in capsys.readouterr().err

    assert main(["data", "show", "nine", "-c", config_path]) == 2
    assert "version must be a number or 'latest'" in capsys.readouterr().err

    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(yaml.safe_dump({**demo_raw_config(tmp_path), "trainig": {}}))
    assert main(["data", "versions", "-c", str(bad_config)]) == 2
    assert "trainig: unknown key" in capsys.readouterr().err

    assert main(["data", "generate", str(tmp_path / "x.csv"), "--shift", "height=1"]) == 2
    assert "cannot shift ['height']" in capsys.readouterr().err


def test_no_config_anywhere_is_explained(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAYMLOPS_CONFIG", raising=False)
    assert main(["data", "versions"]) == 2
    assert "pass --config PATH" in capsys.readouterr().err


def test_generate_shift_moves_the_feature(tmp_path):
    assert main(["data", "generate", str(tmp_path / "s.parquet"), "--rows", "2000", "--shift", "age=1"]) == 0
    import pyarrow.parquet as pq

    shifted = pq.read_table(tmp_path / "s.parquet").column("age").to_numpy().mean()
    base = data.generate_demo_data(2000).column("age").to_numpy().mean()
    assert shifted - base > 8  # one std of age is ~11.8 before clipping
