"""A storage home that cannot be created, and one that fills up: clear errors, nothing half-written."""

from __future__ import annotations

import errno
import subprocess

import pyarrow.csv as pacsv
import pytest
import yaml
from deltalake import DeltaTable

from raymlops import data, registry
from raymlops.cli import main
from raymlops.config import parse_config
from raymlops.errors import RayMLOpsError
from tests.helpers.frozen import run_copy

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("ray_cluster")]


def test_a_home_that_cannot_be_created_is_named_with_the_fix(trained_pair, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    raw = trained_pair.raw("nohome")
    raw["storage"]["home"] = str(blocker / "home")
    config_path = tmp_path / "raymlops.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    assert main(["data", "ingest", str(trained_pair.folder / "d.csv"), "-c", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot create the storage home {blocker / 'home'}" in err and "storage.home" in err
    assert "Traceback" not in err


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB tmpfs, so a write can really fail with ENOSPC (needs mount rights: root in CI)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _fill(folder) -> int:
    """Write until the disk is full; returns the bytes written."""
    written = 0
    try:
        with open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
                written += 65536
    except OSError as e:
        assert e.errno == errno.ENOSPC
    return written


def test_a_full_disk_gives_a_clear_error_and_leaves_no_half_written_version(
    trained_pair, small_disk, tmp_path, figures
):
    raw = trained_pair.raw("fullhome")
    raw["storage"]["home"] = str(small_disk / "home")
    # MLflow's database stays on the roomy disk (the run to register lives there); artifacts: the small one
    raw["storage"]["mlflow_tracking_uri"] = parse_config(trained_pair.raw("x")).mlflow_tracking_uri
    cfg = parse_config(raw)
    first_csv, second_csv = tmp_path / "first.csv", tmp_path / "second.csv"
    pacsv.write_csv(data.generate_demo_data(400, seed=5), first_csv)
    pacsv.write_csv(data.generate_demo_data(2000, seed=6), second_csv)
    data.ingest(str(first_csv), cfg)
    result = run_copy(trained_pair.good, cfg)  # a run whose artifacts go to the small disk
    mv = registry.register(result, cfg)
    registry.promote(cfg, f"fullhome/{mv.version}", reason="before the disk filled", force=True)
    rows_before = DeltaTable(cfg.table_uri).to_pyarrow_table().num_rows
    history_before = registry.history(cfg)

    filled = _fill(small_disk)
    failures = {}
    with pytest.raises(RayMLOpsError) as ingest_error:
        data.ingest(str(second_csv), cfg, mode="append")
    failures["ingest"] = str(ingest_error.value)
    with pytest.raises(RayMLOpsError) as register_error:
        registry.register(result, cfg)
    failures["register"] = str(register_error.value)
    with pytest.raises(RayMLOpsError) as alias_error:
        registry.set_alias(cfg, "challenger", mv.version)  # the move is recorded in the history first
    failures["set_alias"] = str(alias_error.value)
    for step, message in failures.items():
        assert str(small_disk) in message and ("No space" in message or "full" in message), (step, message)

    # nothing half-written: the table, the versions and the aliases are as they were
    table = DeltaTable(cfg.table_uri)
    versions_after_failure = [v.version for v in registry.list_versions(cfg)]
    figures.update(
        disk_bytes_filled=filled,
        refused_operations=len(failures),
        delta_version_after_failure=table.version(),
        registered_versions_after_failure=len(versions_after_failure),
        history_entries_added=len(registry.history(cfg)) - len(history_before),
    )
    assert table.version() == 0 and table.to_pyarrow_table().num_rows == rows_before
    assert versions_after_failure == [mv.version]
    assert registry.champion(cfg).version == mv.version
    assert "challenger" not in registry.resolve(cfg, f"fullhome/{mv.version}").aliases  # put back
    assert registry.history(cfg) == history_before

    (small_disk / "filler").unlink(missing_ok=True)  # space again: the same calls now succeed
    assert data.ingest(str(second_csv), cfg, mode="append").version == 1
    figures.update(ingest_error=failures["ingest"][:90] + "…")
