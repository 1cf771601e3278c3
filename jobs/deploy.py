"""Ray job: deploy the endpoint (it serves the champion and follows the registry) and its drift monitor.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/deploy.py --config configs/demo.yaml

Both keep running after the job ends.
"""

import sys

from raymlops import pipeline
from raymlops._internal import entrypoint


def run(config, args):
    return {"endpoint_url": pipeline.deploy(config, say=entrypoint.say).url}


if __name__ == "__main__":
    sys.exit(entrypoint.main(__doc__.splitlines()[0], run))
