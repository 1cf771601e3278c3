"""Delta tables on local disk or object storage, and raymlops' record of each version.

Ray Data's ``write_delta`` makes one atomic Delta commit but cannot attach
commit metadata, so raymlops records what it knows about each version (digests,
source, counts, schema) in ``<table>/_raymlops/versions/<version>.json``. Delta
readers and ``VACUUM`` ignore folders that start with an underscore.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from raymlops.data._results import DatasetVersion
from raymlops.errors import StorageError, VersionNotFoundError

_SIDECAR = "_raymlops/versions"


def normalise_uri(uri: str) -> str:
    """Absolute local path for a plain path; URIs with a scheme are left alone."""
    if "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


def delta_version(table_uri: str) -> int | None:
    """The latest Delta version of a table, or None when there is no table yet."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(table_uri):
        return None
    return int(DeltaTable(table_uri).version())


def record_version(dataset_version: DatasetVersion) -> None:
    """Write the sidecar record of one version (idempotent)."""
    fs, base = _fs(dataset_version.table_uri)
    folder = f"{base}/{_SIDECAR}"
    try:
        fs.create_dir(folder, recursive=True)
        with fs.open_output_stream(f"{folder}/{dataset_version.version:020d}.json") as out:
            out.write(dataset_version.to_json().encode())
    except OSError as e:
        raise StorageError(f"cannot write the version record under {folder}: {e}") from e


def list_versions(table_uri: str) -> list[DatasetVersion]:
    """Every version raymlops wrote to the table, oldest first (empty when none)."""
    fs, base = _fs(table_uri)
    selector = pafs.FileSelector(f"{base}/{_SIDECAR}", allow_not_found=True)
    infos = sorted((i for i in fs.get_file_info(selector) if i.path.endswith(".json")), key=lambda i: i.path)
    versions = []
    for info in infos:
        with fs.open_input_stream(info.path) as src:
            versions.append(DatasetVersion.from_json(src.read().decode()))
    return versions


def head(version: DatasetVersion, num_rows: int) -> pa.Table:
    """The first ``num_rows`` rows of a data version, as committed (for ``raymlops data show``)."""
    import pyarrow.parquet  # noqa: F401  (deltalake's to_pyarrow needs it loaded)
    from deltalake import DeltaTable

    return DeltaTable(version.table_uri, version=version.version).to_pyarrow_dataset().head(num_rows)


def get_version(table_uri: str, version: int | None = None) -> DatasetVersion:
    """One version's record; ``None`` means the latest.

    Raises:
        VersionNotFoundError: no such version, naming the ones that exist.
    """
    versions = list_versions(table_uri)
    if not versions:
        raise VersionNotFoundError(
            f"no data versions in {table_uri}; ingest data first with `raymlops data ingest SOURCE`"
        )
    if version is None:
        return versions[-1]
    for v in versions:
        if v.version == version:
            return v
    known = ", ".join(str(v.version) for v in versions)
    raise VersionNotFoundError(f"data version {version} does not exist in {table_uri}; versions: {known}")


def append_quarantine(quarantine_uri: str, rows: pa.Table) -> int:
    """Append rows set aside by an ingest to the quarantine table; return its new version."""
    from deltalake import write_deltalake

    try:
        write_deltalake(quarantine_uri, rows, mode="append")
    except OSError as e:
        raise StorageError(f"cannot write the quarantine table {quarantine_uri}: {e}") from e
    version = delta_version(quarantine_uri)
    assert version is not None  # just written
    return version


def quarantine_schema() -> pa.Schema:
    return pa.schema(
        [
            ("ingest_id", pa.string()),
            ("ingested_at", pa.timestamp("us", tz="UTC")),
            ("source_uri", pa.string()),
            ("reasons", pa.list_(pa.string())),
            ("row", pa.string()),
        ]
    )


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_writable(table_uri: str) -> None:
    """Fail before any work when a local table location cannot be written."""
    if "://" in table_uri:
        return
    parent = Path(table_uri)
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise StorageError(
            f"cannot write to {parent} (needed for table {table_uri}): permission denied. "
            "Set storage.home / RAYMLOPS_HOME or data.table_uri to a writable location."
        )


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    fs, path = pafs.FileSystem.from_uri(normalise_uri(uri))
    return fs, path.rstrip("/")
