"""The ``raymlops`` command line: parsing and printing only, one function call per command.

One module per command group (``_data``, ``_models``, ``_serving``, ``_loop``,
``_monitor``, ``_cluster``); each adds its parsers and holds handlers that
parse, call one function of the library and print its result. Heavy modules
(Ray, MLflow, torch) are imported inside the handlers so that
``raymlops --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from raymlops.cli import _cluster, _data, _loop, _models, _monitor, _serving
from raymlops.cli._common import DEFAULT_CONFIG, ENV_CONFIG, EXIT_USER_ERROR
from raymlops.errors import RayMLOpsError

__all__ = ["DEFAULT_CONFIG", "ENV_CONFIG", "EXIT_USER_ERROR", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raymlops`` command; returns the exit code."""
    parser = _parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # `raymlops submit JOB [options] -- ARGS`: what follows `--` belongs to the job, not to us
    passed: list[str] = []
    if "--" in words and words[:1] == ["submit"]:
        cut = words.index("--")
        words, passed = words[:cut], words[cut + 1 :]
    args = parser.parse_args(words)
    if passed:
        args.job_args = passed
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        result: int = args.handler(args)
        return result
    except RayMLOpsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raymlops",
        description=(
            "The ML lifecycle on Ray: versioned, validated data (Delta Lake), distributed "
            "training, a model registry with a validation gate, serving, drift monitoring "
            "and retraining. Runs on an embedded local Ray, or on a cluster when RAY_ADDRESS is set."
        ),
        epilog=(
            f"Every command reads one YAML config: --config PATH, else ${ENV_CONFIG}, else "
            f"./{DEFAULT_CONFIG}. Start with `raymlops demo`."
        ),
    )
    from raymlops import __version__

    parser.add_argument("--version", action="version", version=f"raymlops {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _loop.register_demo(sub)
    _data.register(sub)
    _models.register(sub)
    _serving.register(sub)
    _loop.register_jobs(sub)
    _monitor.register(sub)
    _cluster.register(sub)
    return parser
