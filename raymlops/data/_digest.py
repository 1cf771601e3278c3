"""Order-independent content digests of tables.

Ray Data reads and writes blocks in parallel, so row order is not stable; a
digest over bytes in file order would change between two reads of the same
rows. Instead every row gets two independent 64-bit hashes (what pandas'
``hash_pandas_object`` gives under two keys) and a table's digest is built
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

import numpy as np
import pyarrow as pa

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
_SAMPLE_ROWS = 4_096  # rows that tell a categorical text column from an id


def row_hashes(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Two uint64 hashes per row, stable across processes, machines and batchings.

    A row's hash is pandas' ``hash_pandas_object(frame, index=False, hash_key=...)``
    under each key, where ``frame`` holds each column with a dtype that depends on
    its Arrow type alone: floats as float64 with NaN, integers, bools and times as
    int64 with a sentinel for null, anything else as text with a sentinel. (Arrow's
    ``to_pandas`` turns an int column into float only in batches that hold a null,
    so a row's hash would depend on its neighbours.) ``tests/unit/test_digest.py``
    keeps that definition and checks equality bit for bit. It is computed column
    by column without building a DataFrame: pandas ignores the key for numbers,
    so those are hashed once for both, and a categorical text column is
    dictionary-encoded by Arrow so only its distinct values become Python strings.
    Hashing was most of an ingest's time, and building the frame most of the
    hashing's (figures in ``benchmarks/README.md``).
    """
    hashes_1, hashes_2 = _column_hashes(table)
    return _combine(hashes_1, table.num_rows), _combine(hashes_2, table.num_rows)


def row_and_value_hashes(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``row_hashes`` plus a hash of each value of ``column`` on its own, at no extra cost.

    The value hash is a by-product of the row hash; the duplicate-id check
    compares these 8-byte numbers instead of the ids' text (5M ids: a 0.14 s
    sort against 2-3.5 s for Arrow's ``value_counts``).
    """
    hashes_1, hashes_2 = _column_hashes(table)
    value_hash = hashes_1[table.column_names.index(column)]
    return _combine(hashes_1, table.num_rows), _combine(hashes_2, table.num_rows), value_hash


def _column_hashes(table: pa.Table) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each column's value hashes under the two keys, in column order."""
    hashes_1: list[np.ndarray] = []
    hashes_2: list[np.ndarray] = []
    for column in table.columns:
        if _is_text(column.type):
            text_1, text_2 = _text_hashes(column, (_KEY_1, _KEY_2))
            hashes_1.append(text_1)
            hashes_2.append(text_2)
        else:
            number_hash = _number_hashes(column)
            hashes_1.append(number_hash)
            hashes_2.append(number_hash)
    return hashes_1, hashes_2


def key_hashes(column: pa.Array | pa.ChunkedArray, hash_key: str) -> np.ndarray:
    """One uint64 per value of ``column`` under ``hash_key`` (16 characters): a one-column row hash."""
    if len(column) == 0:
        return np.zeros(0, dtype=np.uint64)
    kind = column.type
    values = _text_hashes(column, (hash_key,))[0] if _is_text(kind) else _number_hashes(column)
    return _combine([values], len(column))


def _is_text(kind: pa.DataType) -> bool:
    return not (
        pa.types.is_floating(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_temporal(kind)
    )


def _number_hashes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.util.hash_array(_stable_values(column)), dtype=np.uint64)


def _text_hashes(column: pa.Array | pa.ChunkedArray, hash_keys: tuple[str, ...]) -> list[np.ndarray]:
    """Hash each distinct value once per key (pandas' SipHash of the UTF-8 text), then spread by index."""
    import pandas as pd
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    text = pc.fill_null(column, _NULL_TEXT)
    sample = text.slice(0, _SAMPLE_ROWS)
    if pc.count_distinct(sample).as_py() > len(sample) // 2:  # ids and free text: encoding buys nothing
        values = text.to_numpy(zero_copy_only=False)
        return [np.asarray(pd.util.hash_array(values, hash_key=key, categorize=False)) for key in hash_keys]
    encoded = text.dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    hashed = [np.asarray(pd.util.hash_array(distinct, hash_key=key, categorize=False)) for key in hash_keys]
    return [values.take(indices) for values in hashed]


def _stable_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A number column as the row hash sees it: float64 with NaN, else int64 with a sentinel for null."""
    import pyarrow.compute as pc

    if pa.types.is_floating(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    as_int = column.cast(pa.int64(), safe=False)  # uint64 keeps its bits, as pandas' view does
    return np.asarray(pc.fill_null(as_int, _NULL_INT).to_numpy(zero_copy_only=False))


def _combine(hashes: list[np.ndarray], num_rows: int) -> np.ndarray:
    """pandas' ``combine_hash_arrays`` (CPython's tuple hash, vectorised), here to avoid its private API."""
    if num_rows == 0:
        return np.zeros(0, dtype=np.uint64)
    out = np.full(num_rows, 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    num_items = len(hashes)
    for i, values in enumerate(hashes):
        inverse_i = num_items - i
        out ^= values
        out *= mult
        mult += np.uint64(82520 + inverse_i + inverse_i)
    out += np.uint64(97531)
    return out


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
