"""The gate's rules: each turns evaluations into ``GateCheck`` verdicts (pure, no I/O)."""

from __future__ import annotations

import math

from raymlops.config import LOWER_IS_BETTER, MetricRule, ProjectConfig
from raymlops.evaluate._report import Evaluation, GateCheck, fmt


def check(
    challenger: Evaluation,
    champion: Evaluation | None,
    config: ProjectConfig,
) -> tuple[GateCheck, ...]:
    """Apply every gate rule of ``config`` to a challenger (and the champion, when there is one)."""
    checks: list[GateCheck] = []
    for rule in config.gate_rules:
        checks += _metric_checks(rule, challenger, champion)
    checks += _calibration_checks(challenger, config)
    checks += _slice_checks(challenger, champion, config)
    checks += _fairness_checks(challenger, config)
    checks += _importance_checks(challenger, config)
    return tuple(checks)


def _calibration_checks(challenger: Evaluation, config: ProjectConfig) -> list[GateCheck]:
    """The default ceiling on expected calibration error (classification), unless a rule of the user's
    already judges calibration_error. Badly calibrated probabilities mislead whoever reads them, and the
    monitor's estimates rest on them."""
    ceiling = config.gate.max_calibration_error
    if ceiling is None or challenger.task == "regression":
        return []
    if any(rule.metric == "calibration_error" for rule in config.gate_rules):
        return []
    value = challenger.metrics.get("calibration_error", math.nan)
    ok = math.isfinite(value) and value <= ceiling
    return [
        GateCheck(
            "calibration_error ceiling",
            "overall",
            value,
            None,
            ceiling,
            ok,
            f"expected calibration error {value:.4f} {'<=' if ok else '>'} gate.max_calibration_error "
            f"{ceiling}",
        )
    ]


def _metric_checks(rule: MetricRule, challenger: Evaluation, champion: Evaluation | None) -> list[GateCheck]:
    metric = rule.metric
    value = challenger.metrics[metric]
    up = rule.higher_is_better
    out: list[GateCheck] = []
    if not math.isfinite(value):
        return [
            GateCheck(
                f"{metric} defined",
                "overall",
                None,
                None,
                None,
                False,
                f"{metric} is undefined on this holdout (a class is missing?)",
            )
        ]
    if rule.threshold is not None:
        ok = value >= rule.threshold if up else value <= rule.threshold
        relation = ">=" if up else "<="
        out.append(
            GateCheck(
                f"{metric} threshold",
                "overall",
                value,
                None,
                rule.threshold,
                ok,
                f"challenger {value:.4f} must be {relation} {rule.threshold:.4f}",
            )
        )
    comparisons = [
        ("min_absolute_change", rule.min_absolute_change),
        ("min_relative_change", rule.min_relative_change),
        ("max_regression", rule.max_regression),
    ]
    for kind, limit in comparisons:
        if limit is None:
            continue
        name = f"{metric} {kind}"
        if champion is None:
            out.append(GateCheck(name, "overall", value, None, limit, None, "no champion to compare with"))
            continue
        base = champion.metrics[metric]
        if not math.isfinite(base):
            detail = f"the champion's {metric} is undefined on this holdout; nothing to compare with"
            out.append(GateCheck(name, "overall", value, None, limit, None, detail))
            continue
        improvement = (value - base) if up else (base - value)
        if kind == "min_absolute_change":
            ok = improvement >= limit
            detail = (
                f"challenger {value:.4f} vs champion {base:.4f}: improvement {improvement:+.4f}, "
                f"needs >= {limit:+.4f}"
            )
        elif kind == "min_relative_change":
            relative = improvement / abs(base) if base else (math.inf if improvement > 0 else 0.0)
            ok = relative >= limit
            detail = (
                f"challenger {value:.4f} vs champion {base:.4f}: relative improvement {relative:+.2%}, "
                f"needs >= {limit:+.2%}"
            )
        else:
            ok = -improvement <= limit
            detail = (
                f"challenger {value:.4f} vs champion {base:.4f}: "
                + (f"worse by {-improvement:.4f}" if improvement < 0 else f"better by {improvement:.4f}")
                + f", allowed regression {limit:.4f}"
            )
        out.append(GateCheck(name, "overall", value, base, limit, ok, detail))
    return out


def _slice_checks(
    challenger: Evaluation, champion: Evaluation | None, config: ProjectConfig
) -> list[GateCheck]:
    metric = config.slice_metric
    up = metric not in LOWER_IS_BETTER
    min_rows = config.gate.min_slice_rows
    out = []
    for column, floor in config.gate.slice_floors.items():
        for s in (s for s in challenger.slices if s.column == column):
            rule = f"slice {'floor' if up else 'ceiling'} {metric}"
            base_slice = champion.slice(s.label) if champion else None
            base = base_slice.metrics[metric] if base_slice else None
            value = s.metrics[metric]
            if s.num_rows < min_rows:
                out.append(
                    GateCheck(
                        rule,
                        s.label,
                        value,
                        base,
                        floor,
                        None,
                        f"{s.num_rows} rows < gate.min_slice_rows {min_rows}: reported, not judged",
                    )
                )
                continue
            ok = math.isfinite(value) and (value >= floor if up else value <= floor)
            relation = ">=" if up else "<="
            out.append(
                GateCheck(
                    rule,
                    s.label,
                    value,
                    base,
                    floor,
                    ok,
                    f"{metric} {fmt(value)} on {s.num_rows} rows must be {relation} {floor:.4f}",
                )
            )
    return out


def _fairness_checks(challenger: Evaluation, config: ProjectConfig) -> list[GateCheck]:
    gate_cfg = config.gate
    out = []
    for gap in challenger.fairness:
        if gate_cfg.max_fairness_gap is not None:
            ok = gap.metric_gap <= gate_cfg.max_fairness_gap
            out.append(
                GateCheck(
                    f"fairness gap {gap.metric}",
                    gap.column,
                    gap.metric_gap,
                    None,
                    gate_cfg.max_fairness_gap,
                    ok,
                    f"best group {gap.best_group} vs worst {gap.worst_group}: gap {gap.metric_gap:.4f}, "
                    f"allowed {gate_cfg.max_fairness_gap:.4f}",
                )
            )
        if gate_cfg.max_positive_rate_gap is not None and gap.positive_rate_gap is not None:
            ok = gap.positive_rate_gap <= gate_cfg.max_positive_rate_gap
            out.append(
                GateCheck(
                    "fairness positive-rate gap",
                    gap.column,
                    gap.positive_rate_gap,
                    None,
                    gate_cfg.max_positive_rate_gap,
                    ok,
                    f"positive-prediction rate differs by {gap.positive_rate_gap:.4f} across "
                    f"{gap.num_groups} groups, allowed {gate_cfg.max_positive_rate_gap:.4f}",
                )
            )
    sensitive = config.data.schema.sensitive_columns
    measured = {g.column for g in challenger.fairness}
    judged = gate_cfg.max_fairness_gap is not None or gate_cfg.max_positive_rate_gap is not None
    for column in sensitive:
        if judged and column not in measured:
            out.append(
                GateCheck(
                    "fairness gap",
                    column,
                    None,
                    None,
                    None,
                    None,
                    f"fewer than 2 groups with >= {gate_cfg.min_slice_rows} rows",
                )
            )
    return out


def _importance_checks(challenger: Evaluation, config: ProjectConfig) -> list[GateCheck]:
    values = [f.importance for f in challenger.importance]
    bad = [f.feature for f in challenger.importance if not math.isfinite(f.importance)]
    out = [
        GateCheck(
            "importance finite",
            "all features",
            None,
            None,
            None,
            not bad,
            f"non-finite importance for {bad}: the model outputs NaN/inf when these change"
            if bad
            else f"{len(values)} finite importances",
        )
    ]
    limit = config.gate.max_importance_share
    if limit is not None and challenger.importance:
        top = max(challenger.importance, key=lambda f: f.share)
        out.append(
            GateCheck(
                "importance share",
                top.feature,
                top.share,
                None,
                limit,
                top.share <= limit,
                f"{top.feature} carries {top.share:.1%} of the total importance, allowed {limit:.1%}",
            )
        )
    return out
