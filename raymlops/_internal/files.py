"""Small state files that a reader or a crash must see whole: the old content or the new, never half."""

from __future__ import annotations

import os
from pathlib import Path


def replace_text(path: Path, text: str, *, durable: bool = False) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic, so a process polling for the file never reads it
    created but not yet written, and a kill mid-write leaves the old file.
    ``durable`` also syncs the data to disk before the rename, for state that
    must survive a power loss, not only a killed process.
    """
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(temporary, path)
