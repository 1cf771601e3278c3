"""Ray job: retrain on production labels, gate against the champion, roll out on a pass.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/retrain.py --config configs/demo.yaml

The drift monitor submits the same step (``raymlops retrain``) by itself.
"""

import sys

from raymlops import pipeline
from raymlops._internal import entrypoint


def add_arguments(parser):
    parser.add_argument("--labels-after-us", type=int, default=None, help="labels sent after this (µs)")


def run(config, args):
    outcome = pipeline.retrain(config, labels_after_us=args.labels_after_us, say=entrypoint.say)
    return outcome.summary()


if __name__ == "__main__":
    sys.exit(entrypoint.main(__doc__.splitlines()[0], run, add_arguments=add_arguments))
