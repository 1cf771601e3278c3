"""Where every persistent artifact lives, derived from one storage home that may be a URI.

A team moves from a laptop to a cluster by changing ``storage.home`` from a
folder to ``s3://…`` (or ``gs://…``, ``abfss://…``). For that to hold, no stage
may build a path of its own: they all ask ``StorageLocations``, and each
artifact is opened by the library that owns its format (``deltalake`` for
tables, ``pyarrow.fs`` for small files, Ray Train's ``storage_path`` for
checkpoints, MLflow for model artifacts), each of which reads the store's
credentials from its standard environment variables.

Node-local disk is scratch only (a replica's journal before hand-over, the
record of an embedded head): ``scratch_path`` is the home itself when it is a
folder, else a folder under the user's cache named after the home.

This module imports nothing from raymlops, so every stage (the config too) may use it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OBJECT_STORE_SCHEMES",
    "StorageLocations",
    "is_remote",
    "join",
    "normalise_home",
    "scheme_of",
]

# object stores that every library raymlops hands a URI to understands
# (deltalake, pyarrow.fs, Ray Train, MLflow)
OBJECT_STORE_SCHEMES = ("s3", "gs", "abfss")


def scheme_of(uri: str) -> str | None:
    """``"s3"`` for ``s3://b/k``; None for a plain path (a Windows drive letter is not a scheme)."""
    if "://" not in uri:
        return None
    return uri.split("://", 1)[0].lower()


def is_remote(uri: str) -> bool:
    """True for an object-store URI: nothing under it is a local file."""
    return scheme_of(uri) in OBJECT_STORE_SCHEMES


def normalise_home(home: str) -> str:
    """The home as an absolute local path, or an object-store URI without a trailing slash.

    Raises:
        ValueError: a scheme no library here can open (the message lists the supported ones).
    """
    scheme = scheme_of(home)
    if scheme is None or scheme == "file":
        return str(Path(home.removeprefix("file://")).expanduser().resolve())
    if scheme not in OBJECT_STORE_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in OBJECT_STORE_SCHEMES)
        raise ValueError(
            f"{home!r} uses the scheme {scheme}://, which is not supported; "
            f"use a local path, file://, or {allowed}"
        )
    bucket_and_key = home.split("://", 1)[1].strip("/")
    if not bucket_and_key:
        raise ValueError(f"{home!r} names no bucket; write it as {scheme}://BUCKET/PREFIX")
    return f"{scheme}://{bucket_and_key}"


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended by ``/`` (a URI) or the OS separator (a path)."""
    if is_remote(uri):
        return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(uri, *parts))


@dataclass(frozen=True)
class StorageLocations:
    """Every persistent artifact of one project, as URIs (a local path is a URI without a scheme).

    Args:
        home_uri: the normalised storage home (``normalise_home``).
        name: the project (and model) name.
        table: the training table's name, used when ``table_override`` is None.
        table_override: ``data.table_uri`` when the config sets one.
    """

    home_uri: str
    name: str
    table: str = "training"
    table_override: str | None = None

    @property
    def remote(self) -> bool:
        return is_remote(self.home_uri)

    # data
    @property
    def table_uri(self) -> str:
        return self.table_override or join(self.home_uri, "data", self.table)

    @property
    def quarantine_uri(self) -> str:
        return f"{self.table_uri}_quarantine"

    # serving
    @property
    def inference_log_uri(self) -> str:
        """Delta table of every prediction the endpoint made (the monitor reads it)."""
        return join(self.home_uri, "serving", f"{self.name}_inference_log")

    @property
    def feedback_uri(self) -> str:
        """Delta table of ground-truth labels sent to ``POST /feedback``."""
        return join(self.home_uri, "serving", f"{self.name}_feedback")

    # training
    @property
    def train_uri(self) -> str:
        """Ray Train's ``storage_path``: checkpoints every worker writes, wherever it runs."""
        return join(self.home_uri, "train")

    @property
    def tune_uri(self) -> str:
        return join(self.home_uri, "tune")

    @property
    def mlflow_artifacts_uri(self) -> str:
        """MLflow artifacts beside a local (SQLite) tracking store; a server chooses its own."""
        if self.remote:
            return join(self.home_uri, "mlartifacts")
        return Path(self.home_uri, "mlartifacts").as_uri()

    # registry
    def alias_history_uri(self) -> str:
        """Delta table of every alias move of every model of the project (append-only)."""
        return join(self.home_uri, "registry", "alias_history")

    def alias_lock_uri(self, model: str) -> str:
        """Delta table whose commits serialise one model's alias moves (see ``registry.alias_lock``)."""
        return join(self.home_uri, "registry", "locks", model)

    # monitor
    @property
    def monitor_uri(self) -> str:
        return join(self.home_uri, "monitor", self.name)

    @property
    def monitor_state_uri(self) -> str:
        return join(self.monitor_uri, "state.json")

    @property
    def windows_uri(self) -> str:
        """One JSON line per judged window (drift and performance)."""
        return join(self.monitor_uri, "windows.jsonl")

    @property
    def monitor_config_uri(self) -> str:
        """The config the monitor runs with, for retrain jobs to read."""
        return join(self.monitor_uri, "config.json")

    @property
    def report_uri(self) -> str:
        return join(self.monitor_uri, "report.html")

    def job_uri(self, submission_id: str) -> str:
        """A retrain job's result record, written by the job and read by the monitor."""
        return join(self.monitor_uri, "jobs", f"{submission_id}.json")

    def retrain_uri(self, tag: str) -> str:
        """A retrain's progress (stage results it resumes from after a crash)."""
        return join(self.monitor_uri, "retrain", tag)

    # node-local scratch
    @property
    def scratch_path(self) -> Path:
        """A folder on this node's disk for what never needs another node: the home itself when local."""
        if not self.remote:
            return Path(self.home_uri)
        digest = hashlib.sha256(self.home_uri.encode()).hexdigest()[:12]
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cache / "raymlops" / digest

    @property
    def journal_path(self) -> Path:
        """The replicas' write-ahead journals: node-local, handed over to the logs on the home."""
        return self.scratch_path / "serving" / f"{self.name}_journal"

    @property
    def chatter_log_path(self) -> Path:
        """Where Ray's and MLflow's own messages go while a raymlops command runs (appended).

        Under the home when it is a folder; with an object-store home, in this
        machine's state folder (``$XDG_STATE_HOME``, where logs belong), since a
        log that grows line by line cannot live in an object store.
        """
        if not self.remote:
            return Path(self.home_uri) / "logs" / "ray-and-mlflow.log"
        digest = hashlib.sha256(self.home_uri.encode()).hexdigest()[:12]
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return state / "raymlops" / digest / "logs" / "ray-and-mlflow.log"

    @property
    def cluster_record_path(self) -> Path:
        """The embedded head this machine started for the home (a local Ray is local by nature)."""
        return self.scratch_path / "runtime" / "cluster.json"
