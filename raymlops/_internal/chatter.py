"""Keep a command's terminal to raymlops' own lines; Ray's and MLflow's messages go to a log file.

A healthy demo printed forty lines of other libraries between its own: Ray's
start-up notes, Ray Data's "progress bars disabled" from every worker, the
raylet's worker-count warnings, Serve's controller notes, MLflow's
registration lines, and the traceback Ray Train prints for each trial ASHA
stops. None of it needs the user; all of it must stay findable. So, while a
command runs:

- the Python loggers of Ray, MLflow and their dependencies, and Python's
  warnings, write WARNING and above to the file ``StorageLocations.chatter_log_path``
  names instead of the terminal;
- the output of Ray workers, which Ray relays to the driver, goes to the same
  file, except the lines raymlops itself writes in workers for the user (a
  training epoch), which carry ``PROGRESS_MARK`` and are printed without it.

Exceptions are untouched: a real error still reaches the user with its cause.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

PROGRESS_MARK = "[raymlops] "
# Loggers whose messages are other libraries' chatter (their children follow them).
THIRD_PARTY_LOGGERS = (
    "ray",
    "ray.serve",  # Ray Serve gives it a terminal handler of its own when imported
    "mlflow",
    "alembic",
    "urllib3",
    "filelock",
    "fsspec",
    "botocore",
    "py.warnings",
)
_FILE_LOGGER = "raymlops.chatter"
_DISPATCHER_HANDLER = "ray_print_logs"  # the name Ray 2.60 registers its printer under
_installed: dict[str, Any] = {}
_lock = threading.Lock()


class _LateFile(logging.Handler):
    """A file handler that holds its records until ``open``: nothing is written before the checks
    of ``runtime.start`` pass (a refused home must stay untouched), and nothing at all if they fail."""

    MAX_HELD = 10_000

    def __init__(self, path: Path, level: int) -> None:
        super().__init__(level)
        self.path = path
        self._held: list[logging.LogRecord] = []
        self._file: Any = None

    def open(self) -> None:
        self.acquire()  # the lock ``handle`` takes around ``emit``
        try:
            if self._file is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            held, self._held = self._held, []
            for record in held:
                self._write(record)
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        if self._file is None:
            if len(self._held) < self.MAX_HELD:
                self._held.append(record)
            return
        self._write(record)

    def _write(self, record: logging.LogRecord) -> None:
        try:
            self._file.write(self.format(record) + "\n")
            self._file.flush()
        except Exception:  # a log line must never break the command
            self.handleError(record)


def route_to_file(path: Path) -> Path:
    """Send third-party logging and Python warnings to ``path`` (once per process); returns the path.

    The file is created by ``open_file``, once the command may write (records are held till then).
    """
    with _lock:
        if "path" in _installed:
            return Path(_installed["path"])
        handler = _LateFile(path, logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.captureWarnings(True)
        try:  # Ray adds its terminal handler to the "ray" logger lazily: have it now, to replace it
            from ray._private.log import generate_logging_config

            generate_logging_config()
        except ImportError:
            pass
        for name in THIRD_PARTY_LOGGERS:
            _route_logger(name, handler)
        _after_ray_logging_config(handler)
        _installed["handler"] = handler
        _reroute_root(handler)
        lines = logging.getLogger(_FILE_LOGGER)
        lines.setLevel(logging.INFO)
        lines.propagate = False
        raw = _LateFile(path, logging.INFO)
        raw.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        lines.addHandler(raw)
        _installed["raw"] = raw
        _installed["path"] = str(path)
    silence_mlflow_stream()
    return path


def open_file() -> None:
    """The command passed its checks: create the log file and write what was held (no-op when off)."""
    with _lock:
        for key in ("handler", "raw"):
            if key in _installed:
                _installed[key].open()


def route_worker_output() -> bool:
    """After ``ray.init``: replace Ray's printer of worker output by ours; False when Ray has none.

    ``ray.init`` applies Ray's ``LoggingConfig`` to the root logger, so the
    root's terminal handler is replaced again here.
    """
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # a Ray version where it moved: its printing stays as it is
        return False
    with _lock:
        if "path" not in _installed:
            return False
        _reroute_root(_installed["handler"])
        if _installed.get("workers"):
            return True
        dispatcher.remove_handler(_DISPATCHER_HANDLER)
        dispatcher.add_handler("raymlops_chatter", _worker_lines)
        # the raylet's notes (e.g. "N worker processes have been started") bypass the dispatcher
        import ray._private.worker as ray_worker

        ray_worker.print_to_stdstream = _raylet_lines
        _installed["workers"] = True
        return True


def reroute() -> None:
    """Route the third-party loggers again (a library that set up its own handler since): no-op when off.

    Ray Serve gives ``ray.serve`` a terminal handler when it is imported.
    """
    with _lock:
        handler = _installed.get("handler")
        if handler is None:
            return
        for name in THIRD_PARTY_LOGGERS:
            _route_logger(name, handler)


def silence_mlflow_stream() -> None:
    """Once routing is on and MLflow imported: MLflow's own stream writes to the log file.

    MLflow prints "Successfully registered model ..." with ``print`` to a
    stream object of its own, past the logging system, and its loggers write to
    that stream too; ``import mlflow`` also resets the ``mlflow`` logger's
    handlers, so both are pointed at the file here, after the import. (Its
    ``disable_logging`` would not hold: importing some MLflow modules turns
    the stream back on.)
    """
    if "path" not in _installed or "mlflow" not in sys.modules:
        return
    try:
        from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM
    except ImportError:
        return
    lines = logging.getLogger(_FILE_LOGGER)

    def write(text: str) -> int:
        if text.strip():
            lines.info("(mlflow) %s", text.rstrip())
        return len(text)

    MLFLOW_LOGGING_STREAM.write = write  # type: ignore[method-assign]
    MLFLOW_LOGGING_STREAM.flush = lambda: None  # type: ignore[method-assign]
    _route_logger("mlflow", _installed["handler"])


def progress(text: str) -> str:
    """A worker-side line meant for the user's terminal (see ``PROGRESS_MARK``)."""
    return f"{PROGRESS_MARK}{text}"


def _raylet_lines(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    _worker_lines(data)


def _worker_lines(data: dict[str, Any]) -> None:
    lines = logging.getLogger(_FILE_LOGGER)
    who = data.get("actor_name") or data.get("task_name")
    source = f"({who + ' ' if who else ''}pid={data.get('pid')}{', ' + data['ip'] if data.get('ip') else ''})"
    for line in data.get("lines") or ():
        if PROGRESS_MARK in line:
            print(line.split(PROGRESS_MARK, 1)[1], flush=True)
        else:
            lines.info("%s %s", source, line)


def _after_ray_logging_config(to_file: logging.Handler) -> None:
    """``ray.init`` applies its ``LoggingConfig`` on the driver, putting a terminal handler back on
    the root and ``ray`` loggers before it warns about anything; route them again right after."""
    try:
        from ray._private.ray_logging import logging_config
    except ImportError:
        return
    configurator = logging_config._logging_configurator
    original = configurator.configure

    def configure(config: Any) -> None:
        original(config)
        _route_logger("ray", to_file)
        _reroute_root(to_file)

    configurator.configure = configure  # type: ignore[method-assign,assignment]


def _route_logger(name: str, to_file: logging.Handler) -> None:
    logger = logging.getLogger(name)
    for old in list(logger.handlers):
        if _writes_to_terminal(old):
            logger.removeHandler(old)
    if to_file not in logger.handlers:
        logger.addHandler(to_file)
    logger.propagate = False


def _reroute_root(to_file: logging.Handler) -> None:
    """Root: everything WARNING and up to the file; raymlops' own warnings also to the terminal."""
    _route_logger("", to_file)  # "" is the root logger (for which propagate means nothing)
    root = logging.getLogger()
    if not any(getattr(h, "name", "") == "raymlops-terminal" for h in root.handlers):
        terminal = logging.StreamHandler(sys.stderr)
        terminal.set_name("raymlops-terminal")
        terminal.setLevel(logging.WARNING)
        terminal.addFilter(lambda record: record.name.startswith("raymlops"))
        terminal.setFormatter(logging.Formatter("  warning: %(message)s"))
        root.addHandler(terminal)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    if getattr(handler, "name", "") == "raymlops-terminal" or isinstance(handler, logging.FileHandler):
        return False
    stream = getattr(handler, "stream", None)
    if type(stream).__name__ == "MlflowLoggingStream" or type(handler).__name__ == "PlainRayHandler":
        return True  # MLflow's wrapper of sys.stderr; Ray's handler that looks sys.stderr up when it writes
    return isinstance(handler, logging.StreamHandler) and stream in (
        sys.stderr,
        sys.stdout,
        sys.__stderr__,
        sys.__stdout__,
    )
