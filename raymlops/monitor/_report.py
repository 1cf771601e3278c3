"""A window of live rows against the training reference: the drift report, and when to retrain.

``Reference`` prepares the reference profile once per model version (sorted
samples, frequency tables, the test chosen per feature). ``drift_report`` then
costs one pass per feature over the window. ``DriftPolicy`` turns reports into
retrain triggers: a verdict needs ``min_window_size`` rows, a window drifts when
the share of drifted features reaches ``drift_share`` or a critical feature
drifts, p-value tests are corrected for the number of features, a trigger needs
``consecutive_windows`` drifted windows in a row, and none comes within
``cooldown_s`` of the last retrain.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from raymlops.config import MonitoringConfig
from raymlops.data import CategoricalProfile, NumericProfile, ReferenceProfile
from raymlops.monitor._stats import (
    chi2,
    corrected,
    default_test,
    frequency_table,
    get_test,
    jensen_shannon,
    numeric_statistics,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    """One feature's test in one window."""

    feature: str
    kind: str  # numeric | categorical
    test: str
    statistic: float
    p_value: float | None  # corrected for the number of p-value tests in the window
    threshold: float
    drifted: bool
    critical: bool
    num_values: int  # non-null values in the window


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """Every feature's verdict in one window, and the window's."""

    num_rows: int
    features: tuple[FeatureDrift, ...]
    drift_share: float  # drifted features / tested features
    drifted: bool
    reason: str
    enough_rows: bool
    window_start: str | None = None  # ISO 8601 of the first and last row, when known
    window_end: str | None = None
    # the model's output against the training labels (not counted in the share)
    prediction: FeatureDrift | None = None

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.feature for f in self.features if f.drifted)

    def to_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        for feature in [*body["features"], *([body["prediction"]] if body["prediction"] else [])]:
            for key in ("statistic", "p_value"):
                value = feature[key]
                if isinstance(value, float) and not math.isfinite(value):
                    feature[key] = None
        return body


@dataclasses.dataclass(frozen=True)
class _NumericRef:
    profile: NumericProfile
    sorted_sample: np.ndarray
    test: str


@dataclasses.dataclass(frozen=True)
class _CategoricalRef:
    profile: CategoricalProfile
    counts: dict[str, int]
    test: str


class Reference:
    """The reference profile prepared for fast windows (once per model version).

    ``label``, when given and profiled, is the reference for prediction drift:
    the model's answers in a window against the training split's labels.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        monitoring: MonitoringConfig,
        features: tuple[str, ...],
        *,
        label: str | None = None,
    ):
        self.monitoring = monitoring
        self.critical = set(monitoring.critical_features)
        self.numeric: dict[str, _NumericRef] = {}
        self.categorical: dict[str, _CategoricalRef] = {}
        for name in features:
            ref = _prepare(profile, name, monitoring.tests.get(name))
            if isinstance(ref, _NumericRef):
                self.numeric[name] = ref
            else:
                self.categorical[name] = ref
        self.prediction: _NumericRef | _CategoricalRef | None = None
        if label is not None:
            try:
                self.prediction = _prepare(profile, label, None)
            except KeyError:  # bundles without a label profile: no prediction drift
                self.prediction = None


def _prepare(profile: ReferenceProfile, name: str, override: str | None) -> _NumericRef | _CategoricalRef:
    column = profile.column(name)
    if isinstance(column, NumericProfile):
        test = get_test(override or default_test("numeric", profile.num_rows), "numeric")
        return _NumericRef(column, np.sort(np.asarray(column.sample, dtype=np.float64)), test.name)
    test = get_test(override or default_test("categorical", profile.num_rows), "categorical")
    return _CategoricalRef(column, dict(column.frequencies), test.name)


def _test(ref: _NumericRef | _CategoricalRef, values: pd.Series) -> tuple[float, float | None]:
    """The reference's test on one column of a window: (statistic, p-value or None)."""
    if isinstance(ref, _NumericRef):
        profile = ref.profile
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return numeric_statistics(
            ref.sorted_sample, profile.bin_edges, profile.counts, profile.std, numbers, (ref.test,)
        )[ref.test]
    _, ref_counts, cur_counts = frequency_table(ref.counts, values.tolist())
    if ref.test == "chi2":
        return chi2(ref_counts, cur_counts)
    return jensen_shannon(ref_counts, cur_counts), None


PARALLEL_MIN_ROWS = 100_000  # below this a thread pool costs more than it saves


def _run_tests(
    refs: list[tuple[str, _NumericRef | _CategoricalRef]], window: pd.DataFrame
) -> list[tuple[float, float | None]]:
    """Every feature's test; on large windows features run on a thread pool (NumPy releases the GIL)."""
    if len(window) < PARALLEL_MIN_ROWS or len(refs) < 2:
        return [_test(ref, window[name]) for name, ref in refs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(refs), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda item: _test(item[1], window[item[0]]), refs))


def _result(
    name: str,
    ref: _NumericRef | _CategoricalRef,
    statistic: float,
    p_value: float | None,
    values: pd.Series,
    *,
    p_threshold: float,
    critical: bool,
) -> FeatureDrift:
    """One column's test as a ``FeatureDrift``: the threshold that applies to it and the verdict."""
    test = get_test(ref.test)
    if test.uses_p_value:
        threshold = p_threshold
        drifted = p_value is not None and math.isfinite(p_value) and p_value < p_threshold
    else:
        threshold = test.threshold
        drifted = math.isfinite(statistic) and statistic >= threshold
    kind = "numeric" if isinstance(ref, _NumericRef) else "categorical"
    return FeatureDrift(
        name, kind, ref.test, statistic, p_value, threshold, drifted, critical, int(values.notna().sum())
    )


def drift_report(
    reference: Reference, window: pd.DataFrame, *, time_column: str | None = None
) -> DriftReport:
    """Test every feature of ``window`` against the reference and judge the window."""
    monitoring = reference.monitoring
    num_rows = len(window)
    span = _span(window, time_column)
    if num_rows < monitoring.min_window_size:
        return DriftReport(
            num_rows,
            (),
            0.0,
            False,
            f"{num_rows} rows < monitoring.min_window_size {monitoring.min_window_size}: no verdict yet",
            False,
            *span,
        )
    refs: list[tuple[str, _NumericRef | _CategoricalRef]] = [
        *reference.numeric.items(),
        *reference.categorical.items(),
    ]
    raw = _run_tests(refs, window)
    adjusted = corrected([p if p is not None else math.nan for _, p in raw], monitoring.correction)
    p_threshold = monitoring.p_value_threshold
    features = [
        _result(
            name,
            ref,
            statistic,
            p_adj if raw_p is not None else None,
            window[name],
            p_threshold=p_threshold,
            critical=name in reference.critical,
        )
        for (name, ref), (statistic, raw_p), p_adj in zip(refs, raw, adjusted, strict=True)
    ]
    prediction = None
    if reference.prediction is not None and "prediction" in window.columns:
        values = window["prediction"]
        statistic, p_value = _test(reference.prediction, values)
        prediction = _result(
            "prediction",
            reference.prediction,
            statistic,
            p_value,
            values,
            p_threshold=p_threshold,
            critical=False,
        )
    tested = [f for f in features if math.isfinite(f.statistic)]
    share = sum(f.drifted for f in tested) / len(tested) if tested else 0.0
    critical = [f.feature for f in features if f.drifted and f.critical]
    drifted = share >= monitoring.drift_share or bool(critical)
    if critical:
        reason = f"critical feature(s) drifted: {', '.join(critical)}"
    else:
        reason = (
            f"{sum(f.drifted for f in tested)} of {len(tested)} features drifted (share {share:.2f}, "
            f"threshold {monitoring.drift_share:.2f})"
        )
    return DriftReport(num_rows, tuple(features), share, drifted, reason, True, *span, prediction=prediction)


def _span(window: pd.DataFrame, time_column: str | None) -> tuple[str | None, str | None]:
    if not time_column or time_column not in window.columns or window.empty:
        return None, None
    times = window[time_column].dropna()
    if times.empty:
        return None, None
    return str(times.min().isoformat()), str(times.max().isoformat())


@dataclasses.dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str
    streak: int  # drifted windows in a row, this one included


@dataclasses.dataclass
class DriftPolicy:
    """Drifted windows in a row → a retrain trigger, never within the cooldown of the last retrain.

    Plain data, so the monitoring actor can persist and restore it as it is.
    """

    consecutive_windows: int
    cooldown_s: float
    streak: int = 0
    last_retrain_s: float | None = None

    def observe(self, report: DriftReport, now_s: float, *, busy: str | None = None) -> Decision:
        """Judge one window. ``busy`` (e.g. "a retrain job is running") holds a trigger back.

        A held-back trigger keeps its streak, so the next drifted window after
        the job ends triggers at once if the drift is still there.
        """
        if not report.enough_rows:
            return Decision(
                False, report.reason, self.streak
            )  # no verdict: the streak neither grows nor breaks
        self.streak = self.streak + 1 if report.drifted else 0
        if not report.drifted:
            return Decision(False, "no drift", 0)
        if self.streak < self.consecutive_windows:
            return Decision(
                False, f"drifted window {self.streak} of {self.consecutive_windows} needed", self.streak
            )
        held = busy or self.cooling(now_s)
        if held:
            return Decision(False, f"drifted, but {held}", self.streak)
        # the cooldown starts when a job is submitted (``started``), not here: a trigger
        # whose job never reached the Jobs API must not silence the drift behind it
        streak, self.streak = self.streak, 0
        return Decision(True, f"{streak} drifted windows in a row: {report.reason}", streak)

    def started(self, now_s: float) -> None:
        """A retrain job was submitted (or ended): the cooldown runs from now."""
        self.last_retrain_s = now_s

    def cooling(self, now_s: float) -> str | None:
        """Why a trigger must wait for the cooldown, or None when it need not."""
        left = self.cooldown_left_s(now_s)
        return f"in the cooldown ({left:.0f} s left)" if left > 0 else None

    def cooldown_left_s(self, now_s: float) -> float:
        """Seconds until a trigger may come again (0 when none has come, or the cooldown is over)."""
        if self.last_retrain_s is None:
            return 0.0
        return max(0.0, self.cooldown_s - (now_s - self.last_retrain_s))
