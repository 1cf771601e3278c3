"""Small state files under the storage home, local or on an object store, always seen whole.

A reader (or a crash) sees the old content or the new, never half: a local
file is written beside its target and renamed over it; an object store's PUT
replaces an object atomically. ``pyarrow.fs`` opens every URI raymlops accepts
(paths, ``s3://``, ``gs://``, ``abfss://``) with each store's standard
credential variables, the same library Ray Train and Ray Data use.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from raymlops.contracts import is_remote, scheme_of
from raymlops.errors import StorageError

__all__ = ["append_line", "credentials_problem", "delete", "probe", "read_text", "replace_text"]


@functools.lru_cache(maxsize=16)
def _filesystem(root: str) -> Any:
    import pyarrow.fs as pafs

    filesystem, _ = pafs.FileSystem.from_uri(root)
    return filesystem


def _resolve(uri: str) -> tuple[Any, str]:
    """The pyarrow filesystem of ``uri`` (one per bucket, reused) and the path inside it."""
    scheme = scheme_of(uri)
    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    filesystem = _filesystem(f"{scheme}://{bucket}")
    return filesystem, uri.split("://", 1)[1]


def _failed(action: str, uri: str, error: Exception) -> StorageError:
    return StorageError(
        f"cannot {action} {uri}: {type(error).__name__}: {error}. Check that the storage home exists and "
        "that "
        "this process has the store's credentials (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
        "GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY)"
    )


def replace_text(uri: str | Path, text: str, *, durable: bool = False) -> None:
    """Write ``text`` to ``uri`` so that a reader sees the old content or the new, never half.

    Locally: a temporary file beside the target renamed over it (``durable``
    also syncs before the rename, for state that must survive a power loss).
    On an object store: one PUT, which replaces the object atomically.

    Raises:
        StorageError: the write failed (the previous content is untouched).
    """
    target = str(uri)
    if is_remote(target):
        filesystem, path = _resolve(target)
        try:
            with filesystem.open_output_stream(path) as out:
                out.write(text.encode())
        except OSError as e:
            raise _failed("write", target, e) from e
        return
    local = Path(target)
    local.parent.mkdir(parents=True, exist_ok=True)
    temporary = local.with_suffix(".tmp")
    with open(temporary, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(temporary, local)


def read_text(uri: str | Path) -> str | None:
    """The content of ``uri``, or None when it does not exist.

    Raises:
        StorageError: it exists (or may) but cannot be read.
    """
    target = str(uri)
    if not is_remote(target):
        try:
            return Path(target).read_text()
        except FileNotFoundError:
            return None
    filesystem, path = _resolve(target)
    try:
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.read()).decode()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _failed("read", target, e) from e


def append_line(uri: str | Path, line: str) -> None:
    """Add one line to a text file; on an object store (no append) the object is rewritten whole.

    Only for files with one writer (the monitor's windows), which keeps the
    read-then-rewrite free of lost updates.
    """
    target = str(uri)
    if not is_remote(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a") as f:
            f.write(line.rstrip("\n") + "\n")
        return
    replace_text(target, (read_text(target) or "") + line.rstrip("\n") + "\n")


def delete(uri: str | Path) -> None:
    """Remove a file; a missing one is not an error."""
    target = str(uri)
    if not is_remote(target):
        Path(target).unlink(missing_ok=True)
        return
    filesystem, path = _resolve(target)
    try:
        filesystem.delete_file(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _failed("delete", target, e) from e


# The standard ways each store's SDK finds credentials without a network call; the instance
# metadata service is left out on purpose: without it pyarrow retries for ~25 s before failing.
_CREDENTIAL_SOURCES = {
    "s3": (
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_PROFILE",),
        ("AWS_WEB_IDENTITY_TOKEN_FILE",),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI",),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",),
    ),
    "gs": (("GOOGLE_APPLICATION_CREDENTIALS",), ("GOOGLE_SERVICE_ACCOUNT",)),
    "abfss": (
        ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"),
        ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_SAS_TOKEN"),
        ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"),
        ("AZURE_FEDERATED_TOKEN_FILE",),
    ),
}
_CREDENTIAL_FILES = {"s3": ("~/.aws/credentials", "~/.aws/config"), "gs": (), "abfss": ()}
ENV_TRUST_INSTANCE_ROLE = "RAYMLOPS_INSTANCE_CREDENTIALS"


def credentials_problem(uri: str) -> str | None:
    """Why no credentials for ``uri``'s store are visible to this process, or None.

    Checked before any request: a store without credentials makes pyarrow retry
    for tens of seconds and then fail with a message that does not say why.
    Machines that get credentials from an instance role set
    ``RAYMLOPS_INSTANCE_CREDENTIALS=1`` to skip the check.
    """
    scheme = scheme_of(uri)
    if scheme not in _CREDENTIAL_SOURCES or os.environ.get(ENV_TRUST_INSTANCE_ROLE) == "1":
        return None
    sources = _CREDENTIAL_SOURCES[scheme]
    if any(all(os.environ.get(name) for name in names) for names in sources):
        return None
    if any(Path(f).expanduser().exists() for f in _CREDENTIAL_FILES[scheme]):
        return None
    wanted = " or ".join(" + ".join(names) for names in sources)
    extra = " (and AWS_ENDPOINT_URL for an S3-compatible server)" if scheme == "s3" else ""
    return (
        f"no credentials for {uri}: set {wanted}{extra} in the environment of every raymlops process "
        f"(on a cluster: the Ray runtime env or the Secret in cluster/), or {ENV_TRUST_INSTANCE_ROLE}=1 "
        "when an instance role provides them"
    )


def probe(uri: str) -> None:
    """Write, read back and delete a small object under ``uri``: the store takes this process's writes.

    Raises:
        StorageError: naming the URI, what failed, and the credentials to set.
    """
    import uuid

    problem = credentials_problem(uri)
    if problem:
        raise StorageError(problem)
    target = f"{uri.rstrip('/')}/.raymlops-probe/{uuid.uuid4().hex}"
    replace_text(target, "probe")
    if read_text(target) != "probe":
        raise StorageError(f"a probe written to {target} did not read back; is the store consistent?")
    delete(target)
