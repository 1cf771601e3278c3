"""A write-ahead journal per replica, so an answered request survives the replica's crash.

The inference log is written in batches, a second after the answers went out;
a replica that is killed (``ray.kill``, the OOM killer, a lost node process)
would take up to one flush interval of answered requests with it. So before a
replica answers, it appends the entry to its own journal file (a length-prefixed
pickle, handed to the OS page cache: no ``fsync``, a few microseconds). After a
batch is durable in the sink, the segments it came from are deleted.

Each replica holds an exclusive ``flock`` on ``<owner>.lock`` for its lifetime;
the kernel releases it when the process dies however it dies. Every flush,
a replica looks for lock files it can lock: their owner is dead, so it adopts
the owner's segments into its own buffer (and its own journal) and deletes
them. Replaying is at-least-once: the drift monitor drops a request id it has
already logged, and a replayed label is harmless because labels are read one
per record (the latest).

The journal never fails a request: when a write fails (disk full, home gone)
it logs once and stops journaling, and the replica carries on as it would
without one. A segment that cannot be read back is renamed ``*.bad`` and kept
for inspection instead of blocking every later flush.

What this does not cover: a machine that loses its page cache (power loss,
kernel panic) before the sink write, and the partial last record of a process
killed while writing it — that request had not been answered yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_LOG = logging.getLogger("raymlops.serve")
_LENGTH_BYTES = 4


class Journal:
    """Append-only segments owned by one live process; the dead's segments are adopted."""

    def __init__(self, folder: Path) -> None:
        # the segments hold request payloads and are unpickled by the next replica:
        # only the user Ray runs as may read or write them
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder = folder
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # locked under a name no adopter globs for, then renamed (the lock moves with
        # the inode): an adopter never sees an unlocked lock file of a live owner
        pending = folder / f".{self.owner}.pending"
        self._lock_fd = os.open(pending, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        pending.rename(folder / f"{self.owner}.lock")
        self._number = 0
        self._file: Any = _open_segment(self._segment(self.owner, 0))
        self._sealed: list[Path] = []
        self.failed: Exception | None = None  # set by the first failed write; journaling stops

    def write(self, entry: Any) -> None:
        """Append one entry, or a list of entries as one record, and hand it to the OS.

        The caller serialises calls. A list is one pickle and one ``write`` for
        all of a batch's requests (the endpoint journals each ``@serve.batch``
        call that way); readers give its entries one by one. A failed write
        stops the journal rather than the request: the entry still goes to the
        sink through the buffer, it is only unprotected.
        """
        if self.failed is not None:
            return
        try:
            blob = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
            record = len(blob).to_bytes(_LENGTH_BYTES, "little") + blob
            num_written = self._file.write(record)
            if num_written != len(record):  # a short write: the disk filled up mid-record
                raise OSError(f"wrote {num_written} of {len(record)} bytes")
        except Exception as error:  # a closed file is a ValueError: never fail the request
            self._fail(error)

    def seal(self) -> None:
        """Start a new segment: what was written so far is in the batch being flushed."""
        if self.failed is not None:
            return
        try:
            self._file.close()
            self._sealed.append(self._segment(self.owner, self._number))
            self._number += 1
            self._file = _open_segment(self._segment(self.owner, self._number))
        except OSError as error:
            self._fail(error)

    def written(self) -> None:
        """The sealed segments' entries are durable in the sink: delete them."""
        for path in self._sealed:
            path.unlink(missing_ok=True)
        self._sealed.clear()

    def adopt_orphans(self) -> Iterator[Any]:
        """Yield the entries of every dead owner's segments, then delete them.

        The caller must have journaled each yielded entry itself before asking
        for the next owner's (it does, by appending them to its own log). A
        replica whose own journal failed adopts nothing: the orphans would
        then live only in its memory.
        """
        if self.failed is not None:
            return
        for lock_path in sorted(self.folder.glob("*.lock")):
            owner = lock_path.stem
            if owner == self.owner:
                continue
            try:
                fd = os.open(lock_path, os.O_RDWR)  # no O_CREAT: another adopter may have removed it
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner is alive
                segments = sorted(self.folder.glob(f"{owner}.*.wal"), key=_segment_number)
                entries = [entry for path in segments for entry in _read_or_set_aside(path)]
                if entries:
                    _LOG.warning(
                        "adopting %d logged entries of a dead replica (%s) from its journal",
                        len(entries),
                        owner,
                    )
                yield from entries
                for path in segments:
                    path.unlink(missing_ok=True)
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def close(self, *, delete: bool) -> None:
        """Release the lock; ``delete`` when everything journaled is durable in the sink."""
        with contextlib.suppress(OSError):
            self._file.close()
        if delete:
            self.written()
            for path in self.folder.glob(f"{self.owner}.*.wal"):
                path.unlink(missing_ok=True)
            Path(self.folder / f"{self.owner}.lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def _segment(self, owner: str, number: int) -> Path:
        return self.folder / f"{owner}.{number}.wal"

    def _fail(self, error: Exception) -> None:
        """Stop journaling; a torn record can only be the segment's last, which readers skip."""
        self.failed = error
        _LOG.warning(
            "the inference-log journal in %s stopped (%s); requests are still logged, "
            "but a replica killed before its next flush loses its unflushed rows",
            self.folder,
            error,
        )
        with contextlib.suppress(OSError):
            self._file.close()


def _open_segment(path: Path) -> Any:
    """A segment opened for unbuffered appends, readable by its owner only."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab", buffering=0)


def _segment_number(path: Path) -> int:
    """``<owner>.<n>.wal`` → n; a stray name sorts last rather than stopping every flush."""
    number = path.name.rsplit(".", 2)[-2]
    return int(number) if number.isdigit() else 2**62


def _read_or_set_aside(path: Path) -> list[Any]:
    """A dead owner's segment, up to its first unreadable record.

    A segment that cannot be read to the end (a corrupt record, an entry type
    this version cannot rebuild) gives the records before the bad one and is
    kept as ``*.bad`` for inspection, instead of stopping every later flush.
    """
    entries: list[Any] = []
    try:
        entries.extend(_read(path))
    except Exception as error:  # unpickling can raise nearly anything
        bad = path.with_name(path.name + ".bad")
        _LOG.error(
            "cannot read journal segment %s past record %d (%s); kept as %s, the rest not replayed",
            path,
            len(entries),
            error,
            bad,
        )
        with contextlib.suppress(OSError):
            path.rename(bad)
    return entries


def _read(path: Path) -> Iterator[Any]:
    """The complete records of a segment; a torn last record (killed mid-write) is skipped."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return
    offset = 0
    while offset + _LENGTH_BYTES <= len(blob):
        size = int.from_bytes(blob[offset : offset + _LENGTH_BYTES], "little")
        start = offset + _LENGTH_BYTES
        if start + size > len(blob):
            return
        record = pickle.loads(blob[start : start + size])
        if isinstance(record, list):  # a batch written as one record (entries are tuples)
            yield from record
        else:
            yield record
        offset = start + size
