"""`raymlops submit`: one of the ``jobs/`` entrypoints as a Ray job, followed to its end.

A thin layer over Ray's ``JobSubmissionClient``: the project folder is the
job's working directory (the storage home, Git data and caches excluded), the
storage home goes along as an absolute path so the job finds the same tables
and MLflow store, and the job's log is printed as it grows.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import TextIO

from raymlops.config import ENV_HOME, ProjectConfig
from raymlops.errors import ConfigError, RuntimeStartError

JOBS = ("pipeline", "ingest", "train", "tune", "retrain", "deploy")
UPLOAD_EXCLUDES = [".raymlops", ".git", "mlruns", "*.db", "__pycache__", ".venv", "venv", "*.egg-info"]
DEFAULT_ADDRESS = "http://127.0.0.1:8265"


def submit_and_follow(
    job: str,
    config: ProjectConfig,
    config_path: str,
    *,
    address: str | None = None,
    job_args: list[str] | None = None,
    project_dir: Path | None = None,
    out: TextIO = sys.stdout,
    poll_s: float = 1.0,
) -> int:
    """Submit ``jobs/<job>.py --config <config_path>`` and print its log until it ends; 0 on success.

    Raises:
        ConfigError: no ``jobs/<job>.py`` in the project folder.
        RuntimeStartError: the Jobs API cannot be reached.
    """
    folder = (project_dir or Path.cwd()).resolve()
    script = folder / "jobs" / f"{job}.py"
    if job not in JOBS or not script.exists():
        raise ConfigError(
            f"no job {job!r} in {folder / 'jobs'}; jobs: {', '.join(JOBS)} "
            "(run `raymlops submit` from the project folder that holds jobs/)"
        )
    config_file = Path(config_path).resolve()
    try:
        job_config: Path = config_file.relative_to(folder)
    except ValueError:  # not uploaded with the folder: the job reads it where it is
        job_config = config_file
        print(
            f"note: {config_file} is outside {folder}; the job reads it at that path, which only "
            "a cluster sharing this filesystem can",
            file=out,
        )
    address = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if not address.startswith("http"):
        address = DEFAULT_ADDRESS if address == "auto" else f"http://{address}"
    if (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray 2.60 heads require the token by default
    from ray.job_submission import JobStatus, JobSubmissionClient

    entrypoint = shlex.join(["python", f"jobs/{job}.py", "--config", str(job_config), *(job_args or [])])
    try:
        client = JobSubmissionClient(address)
        submission_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env={
                "working_dir": str(folder),
                "excludes": UPLOAD_EXCLUDES,
                "env_vars": {ENV_HOME: config.home_uri},
            },
            metadata={"raymlops": job, "model": config.name},
        )
    except (ConnectionError, RuntimeError) as e:
        raise RuntimeStartError(
            f"cannot submit to the Ray Jobs API at {address}: {e}. Start a head with "
            "`ray start --head --dashboard-host=127.0.0.1`, or pass --address / set RAY_ADDRESS"
        ) from e
    print(f"submitted {submission_id} to {address}: {entrypoint}", file=out, flush=True)
    printed = 0
    while True:
        status = client.get_job_status(submission_id)
        logs = client.get_job_logs(submission_id)
        if len(logs) > printed:
            out.write(logs[printed:])
            out.flush()
            printed = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        time.sleep(poll_s)
    info = client.get_job_info(submission_id)
    print(f"job {submission_id} {status.value}" + (f": {info.message}" if info.message else ""), file=out)
    return 0 if status == JobStatus.SUCCEEDED else 1
