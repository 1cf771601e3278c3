"""The replicas' write-ahead journal: a killed process's answered entries are adopted, once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pyarrow as pa

from raymlops.serve._journal import Journal
from raymlops.serve._log import BufferedLog, Feedback


def _table(entries: list[Feedback]) -> pa.Table:
    return pa.table({"request_id": [e.request_id for e in entries]})


def _num_records(segment) -> int:
    """Length-prefixed records in a segment, counted without unpickling them."""
    blob, offset, count = segment.read_bytes(), 0, 0
    while offset + 4 <= len(blob):
        offset += 4 + int.from_bytes(blob[offset : offset + 4], "little")
        count += 1
    return count


def _log(sink, folder, **kwargs) -> BufferedLog[Feedback]:
    return BufferedLog(sink, _table, lambda e: 1, flush_interval_s=3600, journal=Journal(folder), **kwargs)


def test_entries_of_a_killed_process_are_adopted_by_the_next_flush(tmp_path):
    folder = tmp_path / "journal"
    crash = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from raymlops.serve._journal import Journal
        from raymlops.serve._log import BufferedLog, Feedback

        def broken(table):
            raise OSError("disk gone")

        log = BufferedLog(broken, lambda e: None, lambda e: 1, flush_interval_s=3600,
                          journal=Journal(Path({str(folder)!r})))
        for i in range(30):
            log.append(Feedback(f"r{{i}}", i, [1]))
            if i == 19:
                log.flush()  # fails: the first 20 stay in a sealed segment, the rest go to a new one
        log.append_many([Feedback(f"r{{i}}", i, [1]) for i in range(30, 40)])  # a batch: one record
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    segments = sorted(folder.glob("*.wal"))
    assert len(segments) == 2
    assert _num_records(segments[0]) == 20 and _num_records(segments[1]) == 11  # the batch is one record

    written: list[str] = []
    log = _log(lambda t: written.extend(t.column(0).to_pylist()), folder)
    assert log.flush() == 40
    assert written == [f"r{i}" for i in range(40)]
    assert log.flush() == 0  # adopted once: the dead owner's files are gone
    log.close()
    assert list(folder.iterdir()) == []  # a clean close leaves nothing behind


def test_a_live_owner_is_never_adopted_and_written_segments_are_deleted(tmp_path):
    folder = tmp_path / "journal"
    written: list[str] = []
    live = _log(lambda t: None, folder)
    live.append(Feedback("mine", 0, [1]))
    other = _log(lambda t: written.extend(t.column(0).to_pylist()), folder)
    assert other.flush() == 0 and written == []  # the lock is held: not an orphan
    assert live.flush() == 1
    assert not list(folder.glob(f"{live._journal.owner}.0.wal"))  # type: ignore[union-attr]
    live.close()
    other.close()


def test_failed_flushes_keep_the_journal_until_a_write_succeeds(tmp_path):
    folder = tmp_path / "journal"
    fail = [True]
    written: list[str] = []

    def sink(table: pa.Table) -> None:
        if fail[0]:
            raise OSError("disk full")
        written.extend(table.column(0).to_pylist())

    log = _log(sink, folder)
    log.append(Feedback("a", 0, [1]))
    assert log.flush() == 0
    log.append(Feedback("b", 0, [1]))
    assert log.flush() == 0
    assert len(list(folder.glob("*.wal"))) == 3  # two sealed segments and the open one
    fail[0] = False
    assert log.flush() == 2 and written == ["a", "b"]
    assert len(list(folder.glob("*.wal"))) == 1  # only the open, empty segment
    log.close()


def test_a_torn_last_record_is_skipped(tmp_path):
    folder = tmp_path / "journal"
    journal = Journal(folder)
    journal.write(Feedback("whole", 0, [1]))
    journal.close(delete=False)
    segment = next(folder.glob("*.wal"))
    with segment.open("ab") as f:
        f.write((500).to_bytes(4, "little") + b"half a record")
    written: list[str] = []
    log = _log(lambda t: written.extend(t.column(0).to_pylist()), folder)
    assert log.flush() == 1 and written == ["whole"]
    log.close()


def test_a_failed_journal_write_never_fails_the_append(tmp_path):
    folder = tmp_path / "journal"
    written: list[str] = []
    log = _log(lambda t: written.extend(t.column(0).to_pylist()), folder)
    journal = log._journal
    assert journal is not None
    journal._file.close()  # the next write raises ValueError on a closed file: make it an OSError
    journal._file = open("/dev/full", "ab", buffering=0)  # noqa: SIM115 -- every write: ENOSPC
    log.append(Feedback("kept", 0, [1]))
    log.append(Feedback("also kept", 0, [1]))
    assert isinstance(journal.failed, OSError)
    assert log.flush() == 2 and written == ["kept", "also kept"]
    log.close()


def test_an_unreadable_segment_is_set_aside_not_replayed_forever(tmp_path):
    folder = tmp_path / "journal"
    dead = Journal(folder)
    dead.write(Feedback("readable", 0, [1]))
    dead.close(delete=False)
    segment = next(folder.glob("*.wal"))
    assert segment.stat().st_mode & 0o077 == 0  # request payloads: the owner's eyes only
    with segment.open("ab") as f:
        f.write((5).to_bytes(4, "little") + b"notpk")  # a whole record of garbage
        f.write((5).to_bytes(4, "little") + b"never")  # not reached
    written: list[str] = []
    log = _log(lambda t: written.extend(t.column(0).to_pylist()), folder)
    assert log.flush() == 1 and written == ["readable"]  # what came before the bad record
    assert [p.name for p in folder.glob("*.bad")] == [segment.name + ".bad"]
    assert log.flush() == 0  # the dead owner is gone: nothing is retried
    log.close()
