"""What a replica serves: the champion's and challenger's predictors, following the registry.

A watcher thread re-reads the rollout every ``serving.watch_interval_s`` and,
when an alias or weight moved, loads the new bundle beside the old one and
swaps a single reference. Requests in flight finish on the state they started
with, so promotion, rollback and weight changes never fail a request. While the
registry does not answer, the loaded models keep serving.
"""

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig
from raymlops.registry import Registry, Rollout

if TYPE_CHECKING:
    from raymlops.bundle import Predictor

_LOG = logging.getLogger("raymlops.serve")
REGISTRY_ERROR_LOG_INTERVAL_S = 60.0


@dataclasses.dataclass(frozen=True)
class Loaded:
    version: int
    predictor: "Predictor"
    run_id: str
    data_version: str


@dataclasses.dataclass(frozen=True)
class ServedState:
    """Everything a request needs, replaced as a whole (never mutated) when the rollout moves."""

    rollout: Rollout
    champion: Loaded | None
    challenger: Loaded | None
    pinned: bool = False  # set by reconfigure(user_config): the watcher leaves it alone


def settle_heap() -> None:
    """Collect the garbage of a model swap, then exempt everything alive from later collections.

    Once the models are loaded the replica's heap holds about half a million
    long-lived objects (torch, pandas, Ray, FastAPI) that every full collection
    traverses again, many times a second under load (figures in
    ``benchmarks/README.md``, "Figures behind design choices"). ``gc.freeze`` moves them to a generation the
    collector skips, and a young generation of 10,000 objects (Python's default
    is 700) lets most of a request's objects die by reference count before
    any collection looks at them. Unfreezing first lets the previous model's
    cyclic garbage be collected instead of kept for good. The full collection
    here holds the GIL ~0.1 s (measured outside a replica, with the same
    imports), once per model swap.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class ServedModels:
    """The replica's model state and the watcher thread that keeps it in step with the registry."""

    def __init__(self, config: ProjectConfig, on_registry_error: Callable[[Exception], None]) -> None:
        self._config = config
        self._interval_s = config.serving.watch_interval_s
        self._registry = Registry(config)
        self._on_registry_error = on_registry_error
        self.state = ServedState(Rollout(config.name, None, None, 0.0, False), None, None)
        self._cache: dict[int, Loaded] = {}
        self._stop = threading.Event()
        self.refresh()
        self._watcher = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._watcher.start()

    @property
    def watching(self) -> bool:
        return self._watcher.is_alive()

    def refresh(self) -> bool:
        """Re-read the rollout from the registry and swap models if it moved; True when it did."""
        if self.state.pinned:
            return False
        rollout = self._registry.rollout()
        current = self.state
        if (
            rollout == current.rollout
            and (current.champion.version if current.champion else None) == rollout.champion_version
        ):
            return False
        self._apply(rollout, pinned=False)
        return True

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Pin versions and weights from Serve's ``user_config`` (an empty dict follows the registry again).

        Keys: ``champion_version``, ``challenger_version``, ``canary_weight``, ``shadow``.
        """
        if not user_config:
            self.state = dataclasses.replace(self.state, pinned=False)
            self.refresh()
            return
        rollout = Rollout(
            name=self._config.name,
            champion_version=user_config.get("champion_version"),
            challenger_version=user_config.get("challenger_version"),
            canary_weight=float(user_config.get("canary_weight", 0.0)),
            shadow=bool(user_config.get("shadow", False)),
        )
        self._apply(rollout, pinned=True)

    def close(self) -> None:
        self._stop.set()

    def _apply(self, rollout: Rollout, *, pinned: bool) -> None:
        loaded_before = set(self._cache)
        champion = self._load(rollout.champion_version)
        challenger = self._load(rollout.challenger_version)
        self.state = ServedState(rollout, champion, challenger, pinned)  # one reference swap
        keep = {v for v in (rollout.champion_version, rollout.challenger_version) if v is not None}
        self._cache = {v: m for v, m in self._cache.items() if v in keep}
        if set(self._cache) != loaded_before:  # a model came or went; a new canary weight alone is no swap
            settle_heap()
        _LOG.warning(
            "serving %s: champion %s, challenger %s (canary %.2f, shadow %s)",
            self._config.name,
            rollout.champion_version,
            rollout.challenger_version,
            rollout.canary_weight,
            rollout.shadow,
        )

    def _load(self, version: int | None) -> Loaded | None:
        if version is None:
            return None
        if version in self._cache:
            return self._cache[version]
        ref = f"{self._config.name}/{version}"
        mv = self._registry.resolve(ref)
        loaded = Loaded(
            version, self._registry.load_predictor(ref), mv.run_id, mv.tags.get("data.version", "")
        )
        self._cache[version] = loaded
        return loaded

    def _watch(self) -> None:
        """Follow the registry; while it does not answer, keep serving what is loaded and retry.

        Each failed refresh is reported to ``on_registry_error`` (the replica counts
        it in ``raymlops_registry_errors``); the log says so once when the outage
        starts, at most once a minute while it lasts, and once when the registry
        answers again.
        """
        failing_since: float | None = None
        logged_at = 0.0
        while not self._stop.wait(self._interval_s):
            try:
                self.refresh()
            except Exception as e:  # the registry may be unreachable: the served models stay
                self._on_registry_error(e)
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if now - logged_at >= REGISTRY_ERROR_LOG_INTERVAL_S:
                    logged_at = now
                    _LOG.warning(
                        "model watcher: the registry did not answer for %.0f s (%s: %s); still serving "
                        "champion %s, retrying every %.1f s",
                        now - failing_since,
                        type(e).__name__,
                        str(e)[:300],
                        self.state.rollout.champion_version,
                        self._interval_s,
                    )
                continue
            if failing_since is not None:
                _LOG.warning(
                    "model watcher: the registry answers again after %.0f s", time.monotonic() - failing_since
                )
                failing_since, logged_at = None, 0.0
