"""``python -m raymlops.cli``: what the drift monitor submits as a retrain job."""

import sys

from raymlops.cli import main

sys.exit(main())
