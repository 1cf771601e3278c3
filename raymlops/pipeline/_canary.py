"""A judged canary: the challenger on a share of live traffic, compared with the champion, then
promoted, rolled back, or ended as inconclusive.

While the challenger answers its share, the champion also predicts those
requests (the endpoint logs its answers beside them) and answers them itself
where the challenger fails. The judge reads the inference log of the step's
window and compares the two versions on:

- ``error_rate``: the challenger's requests the champion had to answer;
- ``latency_ratio``: p95 of the challenger's model calls over the champion's;
- ``prediction_shift``: Jensen-Shannon distance between the two versions'
  prediction distributions on the window (the drift statistic);
- ``agreement``: classification, the share of the challenger's rows where the
  champion gave the same answer;
- ``accuracy_drop``: with late labels for both versions, champion minus challenger.

A rule is judged once each version answered ``canary.min_requests`` requests
(``error_rate`` earlier, when the failures alone already break it). A step
with too little traffic after ``canary.max_duration_s`` ends the canary
``inconclusive``: the challenger is removed and the champion stays.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from raymlops.config import ProjectConfig
from raymlops.contracts.logs import (
    MODEL_MS,
    RECORD_INDEX,
    REQUEST_ID,
    ROUTE_CANARY,
    ROUTE_CANARY_FALLBACK,
    ROUTE_CHAMPION,
)
from raymlops.errors import PromotionError
from raymlops.registry import TAG_GATE_PASSED

Verdict = Literal["passed", "failed", "inconclusive", "pending"]
TAG_CANARY_OUTCOME = "raymlops.canary.outcome"  # promoted | rolled_back | inconclusive
TAG_CANARY_DETAIL = "raymlops.canary.detail"  # the last verdict with its figures
_BINS = 10  # regression predictions: shared bins for the distribution shift
# Model calls below this are taken as this long: a 1 ms model next to a 0.3 ms one is no regression,
# and one scheduler hiccup in a small window must not make a ratio of 20.
_LATENCY_FLOOR_MS = 10.0


@dataclasses.dataclass(frozen=True)
class CanaryWindow:
    """What the judge measured on one step's window, and its verdict."""

    champion_version: int
    challenger_version: int
    weight: float
    duration_s: float
    num_champion_requests: int
    num_challenger_requests: int  # answered by the challenger or, where it failed, by the champion
    figures: dict[str, float]  # error_rate, latency_ratio, prediction_shift, agreement, accuracy_drop
    failures: tuple[str, ...]  # the rules broken, each with its figure and limit
    verdict: Verdict

    def summary(self) -> str:
        shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(self.figures.items()) if math.isfinite(v))
        head = (
            f"canary {self.verdict}: version {self.challenger_version} at {self.weight:.0%} vs champion "
            f"{self.champion_version}, {self.num_challenger_requests}/{self.num_champion_requests} requests "
            f"in {self.duration_s:.0f} s"
        )
        return (
            head
            + (f" ({shown})" if shown else "")
            + (f"; {'; '.join(self.failures)}" if self.failures else "")
        )


def judge(
    config: ProjectConfig,
    rows: pa.Table | None,
    labels: pa.Table | None,
    *,
    champion: int,
    challenger: int,
    weight: float,
    duration_s: float,
) -> CanaryWindow:
    """The verdict on one step's window of the inference log (``rows``) and its feedback (``labels``)."""
    rules = config.canary
    frame = rows.to_pandas() if rows is not None and rows.num_rows else None
    figures: dict[str, float] = {}
    failures: list[str] = []
    num_champion = num_challenger = 0
    enough = False
    if frame is not None:
        route, version = frame["route"], frame["model_version"]
        served = frame[(route == ROUTE_CHAMPION) & (version == champion)]
        canary = frame[(route == ROUTE_CANARY) & (version == challenger)]
        fallback = frame[(route == ROUTE_CANARY_FALLBACK) & (frame["shadow_version"] == challenger)]
        num_champion = int(served[REQUEST_ID].nunique())
        num_failed = int(fallback[REQUEST_ID].nunique())
        num_challenger = int(canary[REQUEST_ID].nunique()) + num_failed
        enough = num_champion >= rules.min_requests and num_challenger >= rules.min_requests
        if num_challenger:
            figures["error_rate"] = num_failed / num_challenger
        if enough:
            figures.update(_compare(config, served, canary, labels))
            failures = _broken(config, figures)
        elif num_failed > rules.max_error_rate * rules.min_requests:
            # the failures alone break the rule whatever the next requests do: no need to wait
            failures = _broken(config, {"error_rate": num_failed / max(num_challenger, rules.min_requests)})
    verdict: Verdict
    if failures:
        verdict = "failed"
    elif enough and duration_s >= rules.min_duration_s:
        verdict = "passed"
    elif duration_s >= rules.max_duration_s:
        verdict = "inconclusive"
        failures = [
            f"too little traffic: {num_challenger} challenger and {num_champion} champion requests in "
            f"{duration_s:.0f} s, canary.min_requests is {rules.min_requests} each"
        ]
    else:
        verdict = "pending"
    return CanaryWindow(
        champion,
        challenger,
        weight,
        duration_s,
        num_champion,
        num_challenger,
        figures,
        tuple(failures),
        verdict,
    )


def _compare(config: ProjectConfig, served: Any, canary: Any, labels: pa.Table | None) -> dict[str, float]:
    figures: dict[str, float] = {}
    champion_ms = _per_request(served, MODEL_MS)
    challenger_ms = _per_request(canary, MODEL_MS)
    if len(champion_ms) and len(challenger_ms):
        champion_p95 = max(float(np.nanpercentile(champion_ms, 95)), _LATENCY_FLOOR_MS)
        challenger_p95 = max(float(np.nanpercentile(challenger_ms, 95)), _LATENCY_FLOOR_MS)
        figures["latency_ratio"] = challenger_p95 / champion_p95
    if len(served) and len(canary):
        figures["prediction_shift"] = _shift(config, served["prediction"], canary["prediction"])
    classification = config.model.task != "regression"
    if classification and len(canary) and canary["shadow_prediction"].notna().any():
        compared = canary[canary["shadow_prediction"].notna()]
        figures["agreement"] = float((compared["prediction"] == compared["shadow_prediction"]).mean())
    if labels is not None and labels.num_rows:
        accuracy = {
            name: _accuracy(config, part, labels) for name, part in (("champion", served), ("canary", canary))
        }
        if all(n >= config.canary.min_labelled for _, n in accuracy.values()):
            figures["accuracy_drop"] = accuracy["champion"][0] - accuracy["canary"][0]
    return figures


def _broken(config: ProjectConfig, figures: dict[str, float]) -> list[str]:
    rules = config.canary
    limits: list[tuple[str, str, float | None, bool]] = [
        ("error_rate", "max_error_rate", rules.max_error_rate, True),
        ("latency_ratio", "max_latency_ratio", rules.max_latency_ratio, True),
        ("prediction_shift", "max_prediction_shift", rules.max_prediction_shift, True),
        ("agreement", "min_agreement", rules.min_agreement, False),
        ("accuracy_drop", "max_accuracy_drop", rules.max_accuracy_drop, True),
    ]
    broken = []
    for figure, key, limit, upper in limits:
        value = figures.get(figure)
        if limit is None or value is None or not math.isfinite(value):
            continue
        if (value > limit) if upper else (value < limit):
            broken.append(f"{figure} {value:.3g} {'>' if upper else '<'} canary.{key} {limit:g}")
    return broken


def _per_request(part: Any, column: str) -> np.ndarray:
    if not len(part) or column not in part:
        return np.array([])
    return part.drop_duplicates(REQUEST_ID)[column].to_numpy(dtype=np.float64)


def _shift(config: ProjectConfig, champion: Any, challenger: Any) -> float:
    from raymlops.monitor import frequency_table, jensen_shannon

    if config.model.task == "regression":
        both = np.concatenate([champion.to_numpy(np.float64), challenger.to_numpy(np.float64)])
        edges = np.unique(np.quantile(both, np.linspace(0, 1, _BINS + 1)))
        if len(edges) < 2:
            return 0.0
        p = np.histogram(champion.to_numpy(np.float64), edges)[0]
        q = np.histogram(challenger.to_numpy(np.float64), edges)[0]
        return float(jensen_shannon(p, q))
    _categories, p, q = frequency_table(champion.astype(str).value_counts().to_dict(), list(challenger))
    return float(jensen_shannon(p, q))


def _accuracy(config: ProjectConfig, part: Any, labels: pa.Table) -> tuple[float, int]:
    """Accuracy (regression: minus the RMSE, so that a drop is positive either way) and its row count."""
    if not len(part):
        return math.nan, 0
    truth = labels.select([REQUEST_ID, RECORD_INDEX, "label"]).to_pandas()
    joined = part[[REQUEST_ID, RECORD_INDEX, "prediction"]].merge(truth, on=[REQUEST_ID, RECORD_INDEX])
    joined = joined[joined["label"].notna()]
    if not len(joined):
        return math.nan, 0
    if config.model.task == "regression":
        errors = joined["prediction"].astype(float) - joined["label"].astype(float)
        return -float(np.sqrt(np.mean(errors**2))), len(joined)
    return float((joined["prediction"].astype(str) == joined["label"].astype(str)).mean()), len(joined)


@dataclasses.dataclass(frozen=True)
class CanaryOutcome:
    """How a canary ended: ``promoted``, ``rolled_back`` or ``inconclusive``, with each step's window."""

    outcome: Literal["promoted", "rolled_back", "inconclusive"]
    steps: tuple[CanaryWindow, ...]

    @property
    def detail(self) -> str:
        return self.steps[-1].summary() if self.steps else "no canary step ran"


def run_canary(
    config: ProjectConfig,
    ref: str,
    *,
    reason: str,
    say: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> CanaryOutcome:
    """Put ``ref`` on canary traffic step by step, judge each step, then promote or roll back.

    Pass on every step → promoted (the verdict's figures in the alias history);
    a failed rule → the challenger is removed (``canary-rollback`` in the
    history, with the rule and its figures) and the champion never moved; too
    little traffic → ``inconclusive``, also removed, never promoted.
    """
    from raymlops import monitor
    from raymlops.registry import Registry

    say = say or (lambda _m: None)
    registry = Registry(config)
    rules = config.canary
    target = registry.resolve(ref)
    current = registry.champion(target.name)
    if current is None:
        raise PromotionError(f"{target.name} has no champion to compare {ref} with; promote one first")
    if target.tags.get(TAG_GATE_PASSED) != "true":
        raise PromotionError(
            f"{target.name}/{target.version} has no passed gate report; run `raymlops evaluate "
            f"{target.name}/{target.version}` first (a judged canary ends in a promotion)"
        )
    windows: list[CanaryWindow] = []
    for weight in rules.steps:
        registry.set_rollout(ref, canary_weight=weight, reason=f"{reason}: canary step at {weight:.0%}")
        say(
            f"canary: version {target.version} answers {weight:.0%} of requests; judging every "
            f"{rules.check_interval_s:g} s"
        )
        started_s = clock()
        since_us = int(started_s * 1e6)
        while True:
            time.sleep(rules.check_interval_s)
            elapsed_s = clock() - started_s
            window = judge(
                config,
                monitor.log_since(config, since_us),
                monitor.feedback_since(config, since_us),
                champion=current.version,
                challenger=target.version,
                weight=weight,
                duration_s=elapsed_s,
            )
            if window.verdict != "pending":
                break
        windows.append(window)
        say(window.summary())
        if window.verdict != "passed":
            outcome: Literal["rolled_back", "inconclusive"] = (
                "rolled_back" if window.verdict == "failed" else "inconclusive"
            )
            registry.set_rollout(
                None, name=target.name, reason=f"{reason}: {window.summary()}", action=f"canary-{outcome}"
            )
            _tag(registry, target, outcome, window)
            return CanaryOutcome(outcome, tuple(windows))
    registry.promote(ref, reason=f"{reason}; {windows[-1].summary()}")
    _tag(registry, target, "promoted", windows[-1])
    return CanaryOutcome("promoted", tuple(windows))


def _tag(registry: Any, version: Any, outcome: str, window: CanaryWindow) -> None:
    """The verdict on the model version too, where `raymlops models show` and the MLflow UI see it."""
    registry.tag_version(version, {TAG_CANARY_OUTCOME: outcome, TAG_CANARY_DETAIL: window.summary()[:4000]})
