"""Ray job: validate a source and commit it as a new data version.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/ingest.py --config configs/demo.yaml --source data.csv
"""

import sys

from raymlops import data
from raymlops._internal import entrypoint


def add_arguments(parser):
    parser.add_argument("--source", required=True, help="CSV/Parquet file or folder, or a Delta table")
    parser.add_argument("--mode", choices=("append", "overwrite"))
    parser.add_argument("--on-invalid", choices=("fail", "quarantine"))


def run(config, args):
    version = data.ingest(
        args.source, config, mode=args.mode, on_invalid=args.on_invalid, progress=entrypoint.say
    )
    return {
        "data_version": version.version,
        "digest": version.digest,
        "num_rows": version.num_rows,
        "num_rows_added": version.num_rows_added,
        "num_rows_quarantined": version.num_rows_quarantined,
        "table_uri": version.table_uri,
    }


if __name__ == "__main__":
    sys.exit(entrypoint.main(__doc__.splitlines()[0], run, add_arguments=add_arguments))
