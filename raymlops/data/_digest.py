"""Order-independent content digests of tables.

Ray Data reads and writes blocks in parallel, so row order is not stable; a
digest over bytes in file order would change between two reads of the same
rows. Instead every row gets two independent 64-bit hashes (pandas'
vectorised ``hash_pandas_object`` with two keys) and a table's digest is built
from their sums modulo 2**64, the row count and the schema. Sums make the digest:

* independent of row and block order,
* additive: the digest of an appended table version is the previous version's
  sums plus the new rows' sums, so ingest never re-reads old data,
* sensitive to every value, every duplicate row and every dtype change.

It detects accidental change (corruption, a different file, a lost or
duplicated row), not a deliberate forgery; it is not a cryptographic MAC.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

_KEY_1 = "raymlops-rows-k1"  # hash_pandas_object needs 16-character keys
_KEY_2 = "raymlops-rows-k2"
_MOD = 2**64


@dataclasses.dataclass(frozen=True)
class RowSums:
    """The additive state behind a digest: two hash sums and a row count."""

    sum_1: int = 0
    sum_2: int = 0
    num_rows: int = 0

    def __add__(self, other: RowSums) -> RowSums:
        return RowSums(
            (self.sum_1 + other.sum_1) % _MOD,
            (self.sum_2 + other.sum_2) % _MOD,
            self.num_rows + other.num_rows,
        )

    def digest(self, schema_fingerprint: str) -> str:
        """A hex SHA-256 over the sums, the count and the schema."""
        text = f"{self.sum_1}:{self.sum_2}:{self.num_rows}:{schema_fingerprint}"
        return hashlib.sha256(text.encode()).hexdigest()


_NULL_INT = np.iinfo(np.int64).min  # stands for null in integer, bool and timestamp columns
_NULL_TEXT = "\x00raymlops-null\x00"


def stable_frame(table: pa.Table) -> pd.DataFrame:
    """A pandas view of ``table`` whose dtypes depend on the Arrow types alone.

    ``Table.to_pandas`` turns an int64 or bool column into float64 or object only
    in batches that hold a null, so the same row would hash differently in two
    batchings of one table. Here nulls become a sentinel of the column's own
    type (NaN for floats), so a row's hash never depends on its neighbours.
    """
    import pandas as pd
    import pyarrow.compute as pc

    columns: dict[str, np.ndarray] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_floating(kind):
            columns[name] = column.to_numpy(zero_copy_only=False).astype(np.float64)
        elif pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_temporal(kind):
            as_int = column.cast(pa.int64())
            columns[name] = pc.fill_null(as_int, _NULL_INT).to_numpy(zero_copy_only=False)
        else:
            text = column.cast(pa.string()) if not pa.types.is_string(kind) else column
            columns[name] = pc.fill_null(text, _NULL_TEXT).to_numpy(zero_copy_only=False)
    return pd.DataFrame(columns, copy=False)


def row_hashes(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Two uint64 hashes per row, stable across processes, machines and batchings."""
    import pandas as pd

    frame = stable_frame(table)
    if table.num_rows == 0:
        empty = np.zeros(0, dtype=np.uint64)
        return empty, empty
    h1 = pd.util.hash_pandas_object(frame, index=False, hash_key=_KEY_1).to_numpy(np.uint64)
    h2 = pd.util.hash_pandas_object(frame, index=False, hash_key=_KEY_2).to_numpy(np.uint64)
    return h1, h2


def row_sums(table: pa.Table) -> RowSums:
    """The ``RowSums`` of a table (order-independent)."""
    h1, h2 = row_hashes(table)
    return sums_of(h1, h2)


def sums_of(h1: np.ndarray, h2: np.ndarray) -> RowSums:
    # uint64 addition in NumPy wraps around, which is exactly sum mod 2**64.
    return RowSums(int(h1.sum(dtype=np.uint64)), int(h2.sum(dtype=np.uint64)), len(h1))


def schema_fingerprint(schema: pa.Schema) -> str:
    """A short stable id of column names and types (not metadata)."""
    text = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
