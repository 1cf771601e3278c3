"""A per-model lease that keeps alias moves of one model from interleaving, on any node.

A file lock (``fcntl``) holds only on one machine; a Delta commit is atomic on
every store raymlops writes to, so the lease works the same on a laptop's disk
and on S3 shared by a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raymlops.config import ProjectConfig
from raymlops.contracts import is_remote
from raymlops.errors import PromotionError, StorageError
from raymlops.registry._types import actor

_LOG = logging.getLogger(__name__)

ALIAS_LOCK_LEASE_S = 120.0  # longer than any alias move (a few MLflow calls and one Delta append)
ALIAS_LOCK_WAIT_S = 300.0


@contextlib.contextmanager
def alias_lock(config: ProjectConfig, name: str) -> Iterator[None]:
    """An exclusive lease per model: alias moves of one model never interleave, on any node.

    The lock is a one-row Delta table under the storage home. Taking it is a
    Delta commit that overwrites the row read at version V; Delta refuses a
    second overwrite based on the same V (optimistic concurrency: an atomic
    rename on a local or mounted disk, a conditional PUT on an object store),
    so of all processes that saw the lock free exactly one wins, wherever they
    run. A holder that dies keeps the lease for ``ALIAS_LOCK_LEASE_S``, then
    the next process takes it over.

    Raises:
        PromotionError: the lock stayed held for ``ALIAS_LOCK_WAIT_S``.
        StorageError: the lock table cannot be written.
    """
    uri = config.locations.alias_lock_uri(name)
    owner = f"{actor()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
    version = _take_lease(uri, owner)
    try:
        yield
    finally:
        _give_back_lease(uri, owner, version)


def _lease_row(owner: str, expires_s: float) -> Any:
    import pyarrow as pa

    return pa.table({"owner": [owner], "expires_s": [expires_s]})


def _take_lease(uri: str, owner: str) -> int:
    """Commit ourselves as the lock's owner; the Delta version of that commit."""
    import random
    import time

    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError, TableNotFoundError

    if not is_remote(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + ALIAS_LOCK_WAIT_S
    wait_s = 0.02
    while True:
        try:
            try:
                table = DeltaTable(uri)
            except TableNotFoundError:  # the first move of this model: create the lock free
                write_deltalake(uri, _lease_row("", 0.0), mode="overwrite")
                continue
            row = table.to_pyarrow_table().to_pylist()
            free = not row or not row[0]["owner"] or float(row[0]["expires_s"]) < time.time()
            if free:
                write_deltalake(table, _lease_row(owner, time.time() + ALIAS_LOCK_LEASE_S), mode="overwrite")
                return int(table.version()) + 1
        except CommitFailedError:
            pass  # another process committed first: read again
        except OSError as e:
            raise StorageError(f"cannot take the alias lock at {uri}: {e}") from e
        except Exception as e:  # deltalake's own errors (e.g. a creation race) are not OSErrors
            if "concurrent" not in str(e).lower() and "already exists" not in str(e).lower():
                raise StorageError(f"cannot take the alias lock at {uri}: {type(e).__name__}: {e}") from e
        if time.monotonic() > deadline:
            raise PromotionError(
                f"the alias lock {uri} stayed held for {ALIAS_LOCK_WAIT_S:.0f} s; another alias move of this "
                f"model is running (or died less than {ALIAS_LOCK_LEASE_S:.0f} s ago). Try again later"
            )
        time.sleep(wait_s * (0.5 + random.random()))
        wait_s = min(wait_s * 2, 0.5)


def _give_back_lease(uri: str, owner: str, version: int) -> None:
    """Free the lock if we still hold it (a lease that expired under us may have been taken over)."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError

    try:
        table = DeltaTable(uri)
        if int(table.version()) == version:
            write_deltalake(table, _lease_row("", 0.0), mode="overwrite")
            return
        row = table.to_pyarrow_table().to_pylist()
        if row and row[0]["owner"] == owner:
            write_deltalake(table, _lease_row("", 0.0), mode="overwrite")
    except CommitFailedError:
        _LOG.warning("the alias lock %s changed hands while held by %s; its lease had expired", uri, owner)
    except Exception as e:  # the lease then expires by itself
        _LOG.warning(
            "could not free the alias lock %s (%s); it frees itself in %.0f s", uri, e, ALIAS_LOCK_LEASE_S
        )
