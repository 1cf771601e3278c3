"""Ray job: retrain on production labels, gate against the champion, roll out on a pass.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/retrain.py --config configs/demo.yaml

The drift monitor submits the same step by itself, as ``python -m raymlops.cli retrain`` (the
package is importable on every node; this folder need not be).
"""

import sys

from raymlops import pipeline
from raymlops._internal import entrypoint


def add_arguments(parser):
    parser.add_argument("--labels-after-us", type=int, default=None, help="labels sent after this (µs)")
    parser.add_argument("--submission-id", default=None, help="write the outcome where the monitor reads it")


def run(config, args):
    outcome = pipeline.retrain(
        config, submission_id=args.submission_id, labels_after_us=args.labels_after_us, say=entrypoint.say
    )
    return outcome.summary()


if __name__ == "__main__":
    sys.exit(entrypoint.main(__doc__.splitlines()[0], run, add_arguments=add_arguments))
