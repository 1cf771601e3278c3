"""Appending to a Delta table that many processes append to, cheaply and for hours."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

_LOG = logging.getLogger("raymlops.serve")

__all__ = ["DeltaAppender", "delta_sink"]


class DeltaAppender:
    """Appends tables to one Delta table (created on the first append), one commit each, kept open.

    ``write_deltalake(uri, ...)`` opens the table before every append: it reads
    the last checkpoint and replays every commit since, and a log flushed once
    a second adds a commit a second, so that cost grows with the table's age
    until it is the log's largest cost in a replica (``benchmarks/README.md``).
    Appending through a table kept open reads only the commits added since its
    own last one. Its in-memory state grows by each commit it adds, so it is
    opened afresh every ``reopen_every`` appends. Other
    appenders of the same table (replicas, the monitor) are fine: Delta
    commits an append on top of whatever version is newest.

    ``properties`` are the table's Delta properties: given when the first append
    creates it, and set once on a table that lacks them (a log created by an
    older raymlops), so the cheaper commits need no migration step.
    """

    def __init__(
        self, table_uri: str, *, reopen_every: int = 25, properties: Mapping[str, str] | None = None
    ) -> None:
        self.table_uri = table_uri
        self.reopen_every = reopen_every
        self.properties = dict(properties or {})
        self._table: Any = None
        self._num_appends = 0
        self._properties_checked = False

    def __call__(self, table: pa.Table) -> None:
        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import TableNotFoundError

        if self._table is None or self._num_appends >= self.reopen_every:
            self._num_appends = 0
            try:
                self._table = DeltaTable(self.table_uri)
            except TableNotFoundError:
                self._table = None  # the first append creates it
            else:
                self._set_missing_properties(self._table)
        try:
            if self._table is None:
                write_deltalake(self.table_uri, table, mode="append", configuration=self.properties or None)
                self._properties_checked = True
            else:
                # merge: a log written by an older raymlops gains the columns added since
                write_deltalake(self._table, table, mode="append", schema_mode="merge")
        except Exception:
            self._table = None  # replaced or removed under us: open it again next time
            raise
        self._num_appends += 1

    def _set_missing_properties(self, delta_table: Any) -> None:
        """Give an existing table the properties it lacks, once; a failure only costs speed."""
        from deltalake import DeltaTable

        if self._properties_checked:
            return
        self._properties_checked = True
        configuration = delta_table.metadata().configuration
        missing = {k: v for k, v in self.properties.items() if configuration.get(k) != v}
        if not missing:
            return
        try:
            delta_table.alter.set_table_properties(missing)
        except Exception as error:  # another replica altering it at the same moment, say
            _LOG.info("could not set %s on %s (%s); appends stay slower", missing, self.table_uri, error)
            return
        self._table = DeltaTable(self.table_uri)


def delta_sink(table_uri: str, properties: Mapping[str, str] | None = None) -> Callable[[pa.Table], None]:
    """Append a table to a Delta table (created on first write, with ``properties``) in one commit."""
    return DeltaAppender(table_uri, properties=properties)
