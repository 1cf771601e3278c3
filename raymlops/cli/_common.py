"""What every command group shares: finding the config, attaching to a cluster, printing progress."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from raymlops._internal.text import indent, render_table

if TYPE_CHECKING:
    from raymlops.config import ProjectConfig

__all__ = [
    "ADDRESS_HELP",
    "DEFAULT_CONFIG",
    "ENV_CONFIG",
    "EXIT_REJECTED",
    "EXIT_USER_ERROR",
    "Step",
    "add_config",
    "attach",
    "indent",
    "parse_version",
    "project_config",
    "render_table",
    "say",
    "usage",
    "with_runtime",
]

ENV_CONFIG = "RAYMLOPS_CONFIG"
DEFAULT_CONFIG = "raymlops.yaml"
EXIT_REJECTED = 1  # the command ran and said no: a gate rejected, a node failed its check
EXIT_USER_ERROR = 2
ADDRESS_HELP = (
    "Ray cluster address (default: RAY_ADDRESS, else the cluster a running `raymlops serve` or "
    "`raymlops demo` of this project started, recorded under <home>/runtime/cluster.json)"
)


def add_config(parser: argparse.ArgumentParser, default_help: str | None = None) -> None:
    default = default_help or f"${ENV_CONFIG} or ./{DEFAULT_CONFIG}"
    parser.add_argument("--config", "-c", metavar="PATH", help=f"project config YAML (default: {default})")


def usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USER_ERROR


def config_path(args: argparse.Namespace) -> str:
    """The config file a command reads, as the user named it (for jobs and Serve config files)."""
    return str(args.config or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


def project_config(args: argparse.Namespace, *, fallback: Path | None = None) -> ProjectConfig:
    from raymlops.config import load_config
    from raymlops.errors import ConfigError

    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        if Path(DEFAULT_CONFIG).exists():
            path = DEFAULT_CONFIG
        elif fallback is not None:
            path = str(fallback)
        else:
            raise ConfigError(
                f"no config given: pass --config PATH, set {ENV_CONFIG}, or create ./{DEFAULT_CONFIG} "
                "(configs/demo.yaml is a commented example)"
            )
    return load_config(path)


def say(message: str) -> None:
    print(f"  {message}", flush=True)


class Step:
    """Prints '[n] title' and the time it took; the demo's readable progress."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, title: str) -> _StepTimer:
        self.number += 1
        return _StepTimer(f"[{self.number}] {title}")


class _StepTimer:
    def __init__(self, title: str) -> None:
        self.title = title
        self.start = 0.0

    def __enter__(self) -> _StepTimer:
        self.start = time.perf_counter()
        print(self.title, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            print(f"  done in {time.perf_counter() - self.start:.1f} s", flush=True)


def parse_version(text: str) -> int | None:
    from raymlops.errors import ConfigError

    if text == "latest":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"version must be a number or 'latest', got {text!r}") from None


def attach(args: argparse.Namespace, config: ProjectConfig, *, use_record: bool = True) -> None:
    """Point the command at its cluster: the one place a command sets ``RAY_ADDRESS``.

    ``--address`` first, then ``RAY_ADDRESS``, then the record the embedded
    head of a running ``raymlops serve`` or ``raymlops demo`` left under the
    storage home; with none of them, ``runtime.start`` starts an embedded head.
    ``use_record`` False skips the record (``serve`` starts its own head).
    """
    from raymlops import runtime

    address = getattr(args, "address", None) or os.environ.get("RAY_ADDRESS")
    if use_record:
        address = address or runtime.running_cluster_address(config)
    if address:
        os.environ["RAY_ADDRESS"] = address
        if (Path.home() / ".ray" / "auth_token").exists():
            # Ray 2.60 heads require their token; Ray reads the mode once, when it is imported
            os.environ.setdefault("RAY_AUTH_MODE", "token")


def with_runtime(config: ProjectConfig, fn: Callable[[], int]) -> int:
    from raymlops import runtime

    with runtime.session(config, quiet=True):
        return fn()
