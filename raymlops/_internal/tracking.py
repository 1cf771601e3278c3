"""What every MLflow run records about where it came from: flattened config, code, packages."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from raymlops.config import ProjectConfig
from raymlops.contracts import is_remote
from raymlops.errors import StorageError

KEY_PACKAGES = ("ray", "torch", "mlflow", "deltalake", "pyarrow", "pandas", "numpy", "raymlops")
MLFLOW_PARAM_MAX_CHARS = 6000  # MLflow 3 accepts 6000 characters per param value


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """``{"training": {"epochs": 3}}`` → ``{"training.epochs": "3"}``; lists stay JSON."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[prefix] = text[:MLFLOW_PARAM_MAX_CHARS]
    return out


def config_params(config: ProjectConfig) -> dict[str, str]:
    """The config as MLflow params; the schema is logged as an artifact instead (too long).

    A password inside a URI (``postgresql://user:secret@host/db``) is masked:
    params are readable by everyone who can read the experiment.
    """
    raw = config.model_dump(mode="json", by_alias=True)
    raw["data"].pop("schema", None)
    return {key: redacted(value) if key.endswith("_uri") else value for key, value in flatten(raw).items()}


def redacted(uri: str) -> str:
    """``uri`` with the password of its user-info replaced by ``***`` (unchanged when there is none)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:  # not a URI we can parse: say nothing of it rather than leak it
        return "<unparseable URI>"
    if not password:
        return uri
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def config_hash(config: ProjectConfig) -> str:
    text = json.dumps(config.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(start: Path | None = None) -> str | None:
    """The commit of the code being run, with ``-dirty`` when there are local changes."""
    cwd = start or Path.cwd()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def environment_tags() -> dict[str, str]:
    tags = {"python_version": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            tags[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return tags


def experiment_id(config: ProjectConfig, client: Any) -> str:
    """The project's MLflow experiment, its artifacts where every node can read them.

    With SQLite the client writes artifacts itself, under the storage home (not
    ``./mlruns`` of whatever directory a process runs in). With a server, the
    experiment gets ``storage.mlflow_artifact_uri`` or, unset, the server's own
    artifact root, never a folder on the driver's disk.

    Raises:
        StorageError: the experiment exists with its artifacts on one machine's disk
            while the tracking store is a server (other nodes could not load its models).
    """
    existing = client.get_experiment_by_name(config.name)
    remote_tracking = not config.mlflow_tracking_uri.startswith("sqlite:")
    if existing is not None:
        location = str(existing.artifact_location or "")
        if remote_tracking and (location.startswith("file:") or location.startswith("/")):
            raise StorageError(
                f"the MLflow experiment {config.name!r} keeps its artifacts at {location}, on one machine's "
                f"disk, while tracking is the server {redacted(config.mlflow_tracking_uri)}: other nodes "
                "could not load its models. Delete or rename that experiment (`mlflow experiments delete`), "
                "or set storage.mlflow_artifact_uri and create it afresh"
            )
        return str(existing.experiment_id)
    artifacts = config.mlflow_artifact_uri
    if artifacts is not None and not is_remote(artifacts) and artifacts.startswith("file:"):
        Path(artifacts.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(config.name, artifact_location=artifacts))


def log_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):  # MLflow's batch limit
        client.log_batch(run_id, params=items[start : start + 100])
