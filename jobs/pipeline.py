"""Ray job: ingest → prepare → train (or sweep) → gate → promote → deploy the endpoint with its monitor.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/pipeline.py --config configs/demo.yaml --source customers.csv

The endpoint and the drift monitor keep running after the job ends.
"""

import sys

from raymlops import pipeline
from raymlops._internal import entrypoint


def add_arguments(parser):
    parser.add_argument("--source", default=None, help="data to ingest first (default: data.source)")
    parser.add_argument("--sweep", action="store_true", help="a Ray Tune sweep instead of one run")
    parser.add_argument("--no-deploy", action="store_true", help="stop after the promotion")


def run(config, args):
    outcome = pipeline.run(
        config, source=args.source, sweep=args.sweep, deploy_endpoint=not args.no_deploy, say=entrypoint.say
    )
    return outcome.summary()


if __name__ == "__main__":
    sys.exit(entrypoint.main(__doc__.splitlines()[0], run, add_arguments=add_arguments))
