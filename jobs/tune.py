"""Ray job: sweep the config's search space with Ray Tune + ASHA and register the best trial.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/tune.py --config configs/demo.yaml
"""

import sys

from raymlops import pipeline
from raymlops._internal import entrypoint


def add_arguments(parser):
    parser.add_argument("--data-version", type=int, default=None, help="default: the latest")


def run(config, args):
    outcome = pipeline.tune_and_register(config, data_version=args.data_version, say=entrypoint.say)
    return outcome.summary()


if __name__ == "__main__":
    sys.exit(entrypoint.main(__doc__.splitlines()[0], run, add_arguments=add_arguments))
