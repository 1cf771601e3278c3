"""Make Ray Serve's HAProxy ingress bind its stats and metrics ports on ``serving.host``.

Ray 2.60's HAProxy template binds the HTTP frontend on Serve's host but its
stats page (``bind *:8404``) and Prometheus frontend (``bind :9101``) on every
interface, and has no setting for either host. An endpoint that promises
loopback-only binds (docs/RELIABILITY.md) would expose both, and a second
endpoint on the machine crashed on the fixed ports. The embedded head passes
``install`` as its workers' setup hook with the host in ``ENV_HOST``; the
ports come from ``serving.haproxy_stats_port`` / ``haproxy_metrics_port``
through Ray's own variables.

Only the process that imports Ray's HAProxy module (the Serve proxy) pays
anything: the hook registers an import finder that patches the module's
template right after it loads, instead of importing Serve in every worker.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

ENV_HOST = "RAYMLOPS_INGRESS_HOST"
_MODULE = "ray.serve._private.haproxy"


def install() -> None:
    """Ray worker setup hook: patch the HAProxy template once its module is imported."""
    host = os.environ.get(ENV_HOST)
    if not host:
        return
    if _MODULE in sys.modules:
        _patch(sys.modules[_MODULE], host)
        return
    sys.meta_path.insert(0, _Finder(host))


def template_for(template: str, host: str) -> str:
    """Ray's HAProxy template with the stats and metrics frontends bound to ``host``."""
    bound = f"[{host}]" if ":" in host else host  # an IPv6 address
    out = template.replace("bind :{{ config.metrics_port }}", f"bind {bound}:{{{{ config.metrics_port }}}}")
    return out.replace("bind *:{{ config.stats_port }}", f"bind {bound}:{{{{ config.stats_port }}}}")


def _patch(module: ModuleType, host: str) -> None:
    names = vars(module)
    names["HAPROXY_CONFIG_TEMPLATE"] = template_for(names["HAPROXY_CONFIG_TEMPLATE"], host)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of Ray's HAProxy module to patch it after it runs."""

    def __init__(self, host: str) -> None:
        self.host = host

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader, host = spec.loader, self.host

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
                return loader.create_module(spec)

            def exec_module(self, module: ModuleType) -> None:
                loader.exec_module(module)
                _patch(module, host)

        spec.loader = _Loader()
        return spec
