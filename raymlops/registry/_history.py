"""The alias audit history: every alias move, appended to a Delta table under the storage home.

A Delta table rather than MLflow tags because tags keep only the present;
"what served at time T" and "what did ``previous`` point at after that
promotion" need the past, and rollback needs the latter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from raymlops.config import ProjectConfig
from raymlops.contracts import is_remote
from raymlops.errors import StorageError
from raymlops.registry._types import CHAMPION, PREVIOUS, AliasMove, actor

Moves = list[tuple[str, int | None, int | None]]  # (alias, from version, to version)


class AliasHistory:
    """Reads and appends the alias history of one storage home."""

    def __init__(self, config: ProjectConfig) -> None:
        self._uri = config.locations.alias_history_uri()

    @property
    def uri(self) -> str:
        return self._uri

    def moves(self, name: str) -> list[AliasMove]:
        """Every alias move of a model, oldest first (empty when nothing moved yet)."""
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(self._uri):
            return []
        table = DeltaTable(self._uri).to_pyarrow_table()
        rows = [r for r in table.to_pylist() if r["model"] == name]
        rows.sort(key=lambda r: (r["ts"], r["operation_id"], r["position"]))
        return [AliasMove(**r) for r in rows]

    def champion_at(self, name: str, when: dt.datetime) -> int | None:
        """The champion version at time ``when`` (naive times are taken as UTC)."""
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        made = [m for m in self.moves(name) if m.alias == CHAMPION and m.ts <= when]
        return made[-1].to_version if made else None

    def previous_of(self, name: str, version: int) -> int | None:
        """What ``previous`` pointed at right after ``version`` last became champion.

        That is the champion ``version`` replaced when it was promoted, or, if it
        came back by a rollback, whatever that rollback left as ``previous``; so
        repeated rollbacks walk back through the promotions instead of swinging
        between two versions.
        """
        moves = self.moves(name)
        made = [m for m in moves if m.alias == CHAMPION and m.to_version == version]
        if not made:
            return None
        operation = made[-1].operation_id
        left = [m for m in moves if m.operation_id == operation and m.alias == PREVIOUS]
        return left[-1].to_version if left else None

    def append(
        self,
        name: str,
        moves: Moves,
        *,
        action: str,
        reason: str,
        who: str | None,
        report_id: str | None,
        forced: bool,
    ) -> tuple[AliasMove, ...]:
        """Record one operation's moves (one ``operation_id``, in order).

        Raises:
            StorageError: the table cannot be appended to.
        """
        import pyarrow as pa
        from deltalake import write_deltalake

        now = dt.datetime.now(dt.UTC)
        operation = uuid.uuid4().hex
        who = who or actor()
        rows = tuple(
            AliasMove(now, name, alias, before, after, action, who, reason, report_id, forced, operation, i)
            for i, (alias, before, after) in enumerate(moves)
        )
        table = pa.Table.from_pylist([dataclasses.asdict(r) for r in rows], schema=_schema())
        if not is_remote(self._uri):
            Path(self._uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            write_deltalake(self._uri, table, mode="append")
        except Exception as e:  # OSError, or deltalake's own errors (schema, commit conflicts)
            raise StorageError(
                f"cannot append to the alias history at {self._uri}: {type(e).__name__}: {e}; "
                "the aliases were put back"
            ) from e
        return rows


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("ts", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("alias", pa.string()),
            ("from_version", pa.int64()),
            ("to_version", pa.int64()),
            ("action", pa.string()),
            ("actor", pa.string()),
            ("reason", pa.string()),
            ("gate_report_id", pa.string()),
            ("forced", pa.bool_()),
            ("operation_id", pa.string()),
            ("position", pa.int32()),
        ]
    )
