"""Eight processes registering and force-promoting versions of one model at the same moment.

Run against the default SQLite store and, when PostgreSQL's server binaries are
on the machine (Debian's ``postgresql`` package), against a throwaway
PostgreSQL cluster started on 127.0.0.1 for this module.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from raymlops import registry
from raymlops.config import parse_config
from tests.helpers.frozen import frozen_result, run_copy
from tests.helpers.head import free_port

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("ray_cluster")]

REPO = Path(__file__).resolve().parents[2]
NUM_PROCESSES = 8
NUM_ROUNDS = 1

WORKER = f"""
import json, pickle, sys
from raymlops import registry
from raymlops.config import parse_config

raw, result_path, worker = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cfg = parse_config(raw)
with open(result_path, "rb") as f:
    result = pickle.load(f)
done = []
for round_ in range({NUM_ROUNDS}):
    mv = registry.register(result, cfg)
    reason = f"worker {{worker}} round {{round_}}"
    registry.promote(cfg, f"{{cfg.name}}/{{mv.version}}", reason=reason, force=True)
    done.append(mv.version)
print(json.dumps(done))
"""


def _postgres_bin() -> Path | None:
    for folder in [os.environ.get("RAYMLOPS_PG_BIN"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"))]:
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def postgres_uri():
    """A PostgreSQL server for this module only, run as the ``postgres`` user, stopped at the end."""
    import pwd

    pg_bin = _postgres_bin()
    if pg_bin is None:
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine")
    pytest.importorskip("psycopg2", reason="psycopg2 (the MLflow PostgreSQL driver) is not installed")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no 'postgres' user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="rmo-pg-"))
    os.chown(folder, user.pw_uid, user.pw_gid)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_port()
    run = dict(capture_output=True, text=True, timeout=120)
    data_dir = str(folder / "data")
    init = subprocess.run([*as_postgres, str(pg_bin / "initdb"), "-D", data_dir, "-A", "trust"], **run)
    assert init.returncode == 0, init.stdout + init.stderr
    options = f"-h 127.0.0.1 -p {port} -k {folder}"
    start = [*as_postgres, str(pg_bin / "pg_ctl"), "-D", data_dir, "-o", options, "-w", "start"]
    started = subprocess.run([*start, "-l", str(folder / "log")], **run)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        created = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "CREATE DATABASE mlflow"],
            **run,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_postgres, str(pg_bin / "pg_ctl"), "-D", data_dir, "-m", "fast", "stop"], **run)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_eight_processes_promoting_at_once_leave_a_consistent_registry(
    request, trained_pair, tmp_path, figures, store
):
    name = f"contended_{store}"
    raw = trained_pair.raw(name)
    if store == "postgresql":
        # the training run must exist in this store: train-free, register a fresh copy of it
        raw["storage"]["mlflow_tracking_uri"] = request.getfixturevalue("postgres_uri")
    cfg = parse_config(raw)
    result = trained_pair.good if store == "sqlite" else run_copy(trained_pair.good, cfg)
    result_path = tmp_path / "result.pkl"
    result_path.write_bytes(pickle.dumps(frozen_result(result)))

    started = time.monotonic()
    logs = [(tmp_path / f"worker{w}.out", tmp_path / f"worker{w}.err") for w in range(NUM_PROCESSES)]
    workers = []
    try:
        for w, (out, err) in enumerate(logs):  # files, not pipes: a chatty worker never blocks
            with out.open("w") as stdout, err.open("w") as stderr:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-c", WORKER, json.dumps(raw), str(result_path), str(w)],
                        cwd=REPO,
                        stdout=stdout,
                        stderr=stderr,
                    )
                )
        deadline = time.monotonic() + 400
        for worker in workers:
            worker.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    elapsed_s = time.monotonic() - started
    outputs = [(out.read_text(), err.read_text()) for out, err in logs]
    for w, (_out, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-4000:]
    registered = sorted(v for out, _ in outputs for v in json.loads(out.strip().splitlines()[-1]))

    total = NUM_PROCESSES * NUM_ROUNDS
    assert registered == list(range(1, total + 1))  # every version once, no gaps, no duplicates
    assert [v.version for v in registry.list_versions(cfg)] == registered
    moves = [m for m in registry.history(cfg) if m.alias == registry.CHAMPION]
    assert len(moves) == total  # one champion move per promotion, none lost
    broken = [
        (earlier.render(), later.render())
        for earlier, later in itertools.pairwise(moves)
        if later.from_version != earlier.to_version
    ]
    assert not broken, broken  # each move starts where the one before it ended
    champion = registry.champion(cfg)
    assert champion is not None and champion.version == moves[-1].to_version
    previous = registry.resolve(cfg, f"{name}@previous")
    assert previous.version == moves[-1].from_version
    assert {m.reason for m in moves} == {
        f"worker {w} round {r}" for w in range(NUM_PROCESSES) for r in range(NUM_ROUNDS)
    }
    figures.update(
        store=store,
        processes=NUM_PROCESSES,
        versions_registered=len(registered),
        champion_moves=len(moves),
        broken_chain_links=len(broken),
        seconds=round(elapsed_s, 1),
    )
