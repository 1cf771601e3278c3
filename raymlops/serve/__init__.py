"""Serving: the champion (and a canary or shadow challenger) behind an autoscaled Ray Serve endpoint.

``deploy`` starts Serve on ``serving.host:port`` (127.0.0.1 by default) and runs
the application; the replicas follow the registry on their own, so
``registry.promote``, ``rollback`` and ``set_rollout`` reach the endpoint
within ``serving.watch_interval_s`` with no redeploy and no failed request.

HTTP API (see the README):
    POST /predict   {"records": [{feature: value, ...}, ...]} → predictions, probabilities,
                    model_version, request_id; 422 names the field, 413 too large, 503 no model
    POST /feedback  {"request_id": ..., "labels": [...]} → stored for live accuracy
    GET  /healthz   liveness and this replica's batching and logging counters
    GET  /model     champion, challenger, canary weight, shadow

``build_app`` is the import path for Serve config files (``raymlops serve build``
writes one that ``serve deploy`` and KubeRay's RayService accept).

Example:
    >>> endpoint = deploy(cfg)  # doctest: +SKIP
    >>> requests.post(f"{endpoint.url}/predict", json={"records": rows}).json()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig

if TYPE_CHECKING:
    from ray.serve.deployment import Application

__all__ = ["Endpoint", "app", "build_app", "deploy", "serve_config", "shutdown", "status"]

ENDPOINT_READY_TIMEOUT_S = 120.0


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A running endpoint."""

    name: str
    url: str  # base URL; append /predict, /feedback, /healthz, /model

    def render(self) -> str:
        return "\n".join(
            [
                f"endpoint {self.name}: {self.url}",
                f"  curl -s {self.url}/model",
                f"  curl -s -X POST {self.url}/predict -H 'content-type: application/json' "
                "-d '{\"records\": [{...}]}'",
            ]
        )


def app(config: ProjectConfig) -> Application:
    """The Serve application for ``config`` (for ``serve.run``)."""
    from raymlops.serve._app import build

    application: Application = build(config)
    return application


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for Serve config files: ``import_path: raymlops.serve:build_app``.

    ``args``: ``{"config": "path/to/raymlops.yaml"}`` (relative to the job's working directory).
    """
    from raymlops.config import load_config
    from raymlops.errors import ConfigError

    path = args.get("config")
    if not path:
        raise ConfigError("the Serve application needs args: {config: path/to/raymlops.yaml}")
    return app(load_config(path))


def endpoint_url(config: ProjectConfig) -> str:
    serving = config.serving
    prefix = serving.route_prefix.rstrip("/")
    return f"http://{serving.host}:{serving.port}{prefix}"


def deploy(config: ProjectConfig, *, progress: Any = None) -> Endpoint:
    """Start Serve on ``serving.host:port`` if needed and run the app; returns when it answers.

    Needs a running Ray (``runtime.session``). A champion is not required: the
    endpoint answers 503 until one is promoted, then serves it without a restart.
    """
    from ray import serve

    say = progress or (lambda _m: None)
    serving = config.serving
    _check_port_free(config)
    from raymlops._internal import chatter

    chatter.reroute()  # importing Ray Serve gave its driver-side logger a terminal handler of its own
    try:
        serve.start(
            http_options={"host": serving.host, "port": serving.port},
            proxy_location=serving.proxy_location,
            # the controller and proxies log every config change at INFO; keep the terminal for warnings
            logging_config={"log_level": "WARNING", "enable_access_log": serving.access_log},
        )
    except RuntimeError as e:
        if "HAProxy" not in str(e):
            raise
        raise _ingress_error(config, e) from e
    started = time.perf_counter()
    serve.run(app(config), name=config.name, route_prefix=serving.route_prefix, blocking=False)
    endpoint = Endpoint(config.name, endpoint_url(config))
    _wait_ready(endpoint.url, ENDPOINT_READY_TIMEOUT_S)
    say(f"endpoint {endpoint.url} ready in {time.perf_counter() - started:.1f} s")
    return endpoint


def _check_port_free(config: ProjectConfig) -> None:
    """Refuse at once when another process holds ``serving.port`` (Serve's proxy would crash on it).

    Skipped when Serve already runs on this cluster: then its own proxy holds the port.
    """
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    from raymlops.errors import RuntimeStartError
    from raymlops.runtime import port_is_free

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        return
    except ValueError:
        pass
    serving = config.serving
    if not port_is_free(serving.host, serving.port):
        raise RuntimeStartError(
            f"port {serving.port} on {serving.host} (serving.port) is in use by another process, "
            "perhaps another endpoint. Set serving.port to a free port, or stop what holds it."
        )


def _ingress_error(config: ProjectConfig, error: Exception) -> Exception:
    """HAProxy could not start (a port taken in the meantime): name the ports and their keys."""
    import os

    from raymlops.errors import RuntimeStartError
    from raymlops.runtime import HAPROXY_PORT_VARIABLES

    ports = [f"serving.port {config.serving.port}"] + [
        f"{key} {os.environ[variable]}"
        for variable, key in HAPROXY_PORT_VARIABLES.items()
        if variable in os.environ
    ]
    first_line = str(error).strip().splitlines()[0][:300]
    return RuntimeStartError(
        f"Ray Serve's HAProxy ingress could not start ({first_line}); one of its ports on "
        f"{config.serving.host} is probably taken: {', '.join(ports)}. Set free ones in the config, or "
        "serving.ingress: python."
    )


def _wait_ready(url: str, timeout_s: float) -> None:
    import requests

    from raymlops.errors import RuntimeStartError

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"{url}/healthz", timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as e:
            last = str(e)
        time.sleep(0.25)
    raise RuntimeStartError(
        f"the endpoint at {url} did not answer /healthz within {timeout_s:.0f} s ({last})"
    )


def status(config: ProjectConfig) -> dict[str, Any]:
    """Serve's view of the application: its status, and each deployment's replicas by state."""
    from ray import serve

    details = serve.status()
    application = details.applications.get(config.name)
    if application is None:
        return {"name": config.name, "status": "NOT_DEPLOYED", "deployments": {}}
    return {
        "name": config.name,
        "status": str(
            application.status.value if hasattr(application.status, "value") else application.status
        ),
        "message": application.message,
        "deployments": {
            name: {
                "status": str(d.status.value if hasattr(d.status, "value") else d.status),
                "replicas": {
                    str(k.value if hasattr(k, "value") else k): v for k, v in d.replica_states.items()
                },
            }
            for name, d in application.deployments.items()
        },
        "url": endpoint_url(config),
    }


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def shutdown(config: ProjectConfig) -> None:
    """Delete the application (Serve itself keeps running for other applications)."""
    from ray import serve

    serve.delete(config.name)


def serve_config(
    config: ProjectConfig, config_path: str, *, import_path: str = "raymlops.serve:build_app"
) -> dict[str, Any]:
    """A Serve config file (``serve deploy``, KubeRay ``serveConfigV2``) for this project.

    ``config_path`` is where the project config will be, relative to the
    working directory of the Serve application (the image or ``--working-dir``).
    ``import_path`` names the application builder (``raymlops.pipeline:build_app``
    also starts the drift monitor).
    """
    from raymlops.serve._options import deployment_options

    serving = config.serving
    deployment = deployment_options(config)
    return {
        "proxy_location": config.serving.proxy_location,
        "http_options": {"host": serving.host, "port": serving.port},
        "applications": [
            {
                "name": config.name,
                "route_prefix": serving.route_prefix,
                "import_path": import_path,
                "args": {"config": config_path},
                "deployments": [deployment],
            }
        ],
    }
