"""Reading an ingest source with Ray Data: CSV, Parquet or a Delta table, local or in object storage.

On a cluster of several nodes a local path exists only on the driver's
machine, so a local source is read there and handed to Ray Data; a URI is read
by Ray Data's tasks wherever they run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from raymlops._internal.nodes import alive_nodes
from raymlops.errors import DataSourceError

if TYPE_CHECKING:
    import ray.data

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(source_uri: str, configured: str = "auto") -> str:
    """``csv``, ``parquet`` or ``delta`` from the config, else from the path.

    Raises:
        DataSourceError: the source does not exist or its format cannot be told.
    """
    if "://" not in source_uri and not Path(source_uri).exists():
        raise DataSourceError(f"source not found: {source_uri}; pass an existing CSV, Parquet or Delta path")
    if configured != "auto":
        return configured
    path = Path(source_uri.split("://")[-1])
    if (path / "_delta_log").is_dir():
        return "delta"
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in _FORMATS:
            return _FORMATS[suffix]
    if path.is_dir():
        found = {_FORMATS[p.suffix.lower()] for p in path.iterdir() if p.suffix.lower() in _FORMATS}
        if len(found) == 1:
            return found.pop()
    raise DataSourceError(
        f"cannot tell the format of {source_uri}: use a .csv or .parquet file, a folder of "
        "them, or a Delta table; or set data.format to csv, parquet or delta"
    )


def read_source(source_uri: str, fmt: str) -> ray.data.Dataset:
    import pyarrow.csv as pacsv
    import ray
    import ray.data

    # Few, large blocks: every pass below is vectorised per block, and on a small
    # cluster per-block task overhead, not the work, dominates with hundreds of blocks.
    num_blocks = max(2, int(ray.cluster_resources().get("CPU", 2)))
    if "://" not in source_uri and len(alive_nodes()) > 1:
        return _read_on_driver(source_uri, fmt, num_blocks)
    if fmt == "csv":
        # Empty cells are missing values, not empty strings.
        options = pacsv.ConvertOptions(strings_can_be_null=True)
        return ray.data.read_csv(source_uri, convert_options=options, override_num_blocks=num_blocks)
    if fmt == "parquet":
        if Path(source_uri).is_file():
            import pyarrow.parquet as pq

            metadata = pq.read_metadata(source_uri)  # a damaged footer fails here, not in retried tasks
            if metadata.num_row_groups > 1:
                return ray.data.read_datasource(
                    _parquet_row_groups(source_uri, metadata), override_num_blocks=num_blocks
                )
        return ray.data.read_parquet(source_uri, override_num_blocks=num_blocks)
    return ray.data.read_delta(source_uri, override_num_blocks=num_blocks)


def _read_on_driver(path: str, fmt: str, num_blocks: int) -> ray.data.Dataset:
    """A local file read here: Ray Data's read tasks could run on a node that does not have it.

    The rows then travel to the cluster through the object store; a source too
    large for the driver's memory belongs in object storage (pass its URI).
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    import ray.data

    if not Path(path).exists():
        raise DataSourceError(f"{path} does not exist on the machine running this command")
    if fmt == "csv":
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    elif fmt == "parquet":
        table = pq.read_table(path)
    else:
        from deltalake import DeltaTable

        table = DeltaTable(path).to_pyarrow_table()
    step = max(1, -(-table.num_rows // num_blocks))
    return ray.data.from_arrow([table.slice(i, step) for i in range(0, max(table.num_rows, 1), step)])


def _parquet_row_groups(path: str, metadata: Any) -> ray.data.Datasource:
    """A Ray Data source reading one Parquet file in row-group ranges, one read task per range.

    Ray's reader makes one task per file, so a single large file was read and
    validated by one task while the other cores waited (5M rows: 6.2 s in one
    task). Row groups are the file's own independent units; splitting them over
    tasks keeps every core busy. A function returning an instance, because the
    ``Datasource`` base class must not be imported before Ray is needed.
    """
    import pyarrow.parquet as pq
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    num_row_groups = metadata.num_row_groups
    sizes = [
        (metadata.row_group(i).num_rows, metadata.row_group(i).total_byte_size) for i in range(num_row_groups)
    ]
    schema = metadata.schema.to_arrow_schema()

    def read(row_groups: list[int]) -> list[pa.Table]:
        return [pq.ParquetFile(path).read_row_groups(row_groups)]

    class ParquetRowGroups(Datasource):
        def get_name(self) -> str:
            return "ReadParquetRowGroups"

        def estimate_inmemory_data_size(self) -> int:
            return sum(size for _, size in sizes)

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list[ReadTask]:
            num_tasks = max(1, min(parallelism, num_row_groups))
            tasks = []
            for k in range(num_tasks):
                groups = list(range(k * num_row_groups // num_tasks, (k + 1) * num_row_groups // num_tasks))
                meta = BlockMetadata(
                    num_rows=sum(sizes[i][0] for i in groups),
                    size_bytes=sum(sizes[i][1] for i in groups),
                    exec_stats=None,
                    input_files=(path,),
                )
                tasks.append(ReadTask(functools.partial(read, groups), meta, schema, per_task_row_limit))
            return tasks

    return ParquetRowGroups()


def column_names(ds: ray.data.Dataset, source_uri: str, fmt: str) -> list[str]:
    try:
        schema = ds.schema()
    except Exception as e:  # Arrow / Ray wrap parse errors in many types
        raise DataSourceError(f"cannot read {source_uri} as {fmt}: {root_cause(e)}") from e
    if schema is None:
        raise DataSourceError(f"{source_uri} has no rows; nothing to ingest")
    return list(schema.names)


def materialize(ds: ray.data.Dataset, source_uri: str, fmt: str) -> ray.data.Dataset:
    try:
        return ds.materialize()
    except Exception as e:
        raise DataSourceError(f"cannot read {source_uri} as {fmt}: {root_cause(e)}") from e


def root_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
