"""What every ``jobs/*.py`` entrypoint shares: --config, Ray attach, errors, a JSON last line.

A Ray job's logs are read by people (progress lines) and by programs (the last
line is a JSON object: ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from raymlops.config import ProjectConfig, load_config
from raymlops.errors import RayMLOpsError

Run = Callable[[ProjectConfig, argparse.Namespace], dict[str, Any]]


def main(
    description: str,
    run: Run,
    *,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``--config``, start or attach to Ray, call ``run`` and print its summary as JSON."""
    from raymlops import runtime

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", "-c", required=True, help="project config YAML")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        with runtime.session(config):
            summary = run(config, args)
    except RayMLOpsError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}), flush=True)
        return 2
    print(json.dumps({"ok": True, **summary}, default=str), flush=True)
    return 0


def say(message: str) -> None:
    print(message, flush=True)
