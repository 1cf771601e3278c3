"""The validation gate on real registered models: rejections, slices, importance, audited promotion.

One good and one deliberately poor training run are shared by the module;
each test registers them under its own model name, so tests do not depend on
each other's alias moves.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import mlflow
import pytest
import yaml

from raymlops import evaluate, pipeline, registry
from raymlops.cli import main
from raymlops.config import parse_config
from raymlops.data._demo import NOISE_FEATURE
from raymlops.errors import ConfigError, PromotionError, VersionNotFoundError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture(scope="module")
def runs(trained_pair):
    return trained_pair.raw("churn"), trained_pair.good, trained_pair.poor


def _named(raw, name, **gate):
    return parse_config({**raw, "name": name, "gate": gate} if gate else {**raw, "name": name})


def test_worse_challenger_is_rejected_naming_the_rule_and_both_values(runs):
    raw, good, poor = runs
    cfg = _named(raw, "gate_worse")
    champion = registry.register(good, cfg)
    challenger = registry.register(poor, cfg)
    first = pipeline.gate_and_promote(cfg, f"gate_worse/{champion.version}", reason="first model")
    assert first.promoted and first.report is not None and first.report.champion_version is None
    assert {c.rule: c.passed for c in first.report.checks}["roc_auc max_regression"] is None  # no champion

    outcome = pipeline.gate_and_promote(cfg, f"gate_worse/{challenger.version}", reason="try the poor one")
    report = outcome.report
    assert not outcome.promoted and report is not None and not report.passed
    failed = {c.rule: c for c in report.failures}
    rule = failed["roc_auc max_regression"]
    assert rule.observed == report.challenger.metrics["roc_auc"]
    assert rule.baseline == report.champion.metrics["roc_auc"]
    assert rule.baseline - rule.observed > 0.01
    assert f"{rule.observed:.4f}" in report.summary() and f"{rule.baseline:.4f}" in report.summary()
    # both were scored on the same holdout rows
    assert report.challenger.num_rows == report.champion.num_rows
    assert report.challenger.data_digest == report.champion.data_digest
    assert registry.champion(cfg, "gate_worse").version == champion.version
    with pytest.raises(PromotionError, match="gate rejected"):
        registry.promote(cfg, f"gate_worse/{challenger.version}", reason="sneak it in")
    assert registry.champion(cfg, "gate_worse").version == champion.version

    # the report is in the challenger's MLflow run, as JSON and Markdown
    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    logged = mlflow.artifacts.load_text(f"runs:/{poor.run_id}/gate/{report.report_id}.json")
    assert json.loads(logged)["passed"] is False
    markdown = mlflow.artifacts.load_text(f"runs:/{poor.run_id}/gate/{report.report_id}.md")
    assert "| FAIL | roc_auc max_regression | overall |" in markdown
    assert evaluate.load_report(cfg, f"gate_worse/{challenger.version}").report_id == report.report_id


def test_challenger_failing_one_slice_floor_is_rejected_naming_the_slice(runs):
    raw, good, _ = runs
    probe = _named(raw, "gate_slice")
    version = registry.register(good, probe).version
    evaluation = evaluate.evaluate(probe, f"gate_slice/{version}")
    plans = sorted((s for s in evaluation.slices if s.column == "plan"), key=lambda s: s.metrics["accuracy"])
    worst, second = plans[0], plans[1]
    assert worst.metrics["accuracy"] < second.metrics["accuracy"]
    floor = (worst.metrics["accuracy"] + second.metrics["accuracy"]) / 2
    cfg = _named(raw, "gate_slice", slice_floors={"plan": floor}, min_slice_rows=10)
    report = evaluate.gate(cfg, f"gate_slice/{version}")
    assert not report.passed
    assert [c.subject for c in report.failures] == [worst.label]
    assert all(c.passed is not False for c in report.checks if c.rule.startswith("roc_auc"))  # passes overall
    assert worst.label in report.summary()
    with pytest.raises(PromotionError, match=re.escape(worst.label)):
        registry.promote(cfg, f"gate_slice/{version}", reason="slice check")


def test_permutation_importance_ranks_an_informative_feature_above_noise(runs):
    raw, good, _ = runs
    cfg = _named(raw, "gate_importance")
    version = registry.register(good, cfg).version
    evaluation = evaluate.evaluate(cfg, f"gate_importance/{version}")
    importance = {f.feature: f.importance for f in evaluation.importance}
    assert set(importance) == set(cfg.data.schema.feature_names)
    assert importance["days_since_last"] > importance[NOISE_FEATURE]
    assert importance["days_since_last"] > 0.01 and abs(importance[NOISE_FEATURE]) < 0.01
    assert evaluation.importance[0].feature in {"days_since_last", "tenure_months"}
    assert sum(f.share for f in evaluation.importance) == pytest.approx(1.0)
    region = next(f for f in evaluation.fairness if f.column == "region")
    assert region.num_groups == 4 and region.metric_gap >= 0 and region.positive_rate_gap is not None


def test_promote_promote_rollback_is_audited_and_answers_champion_at_time(runs, capsys, tmp_path):
    raw, good, _ = runs
    cfg = _named(raw, "gate_hist")
    v1, v2, _ = (registry.register(good, cfg).version for _ in range(3))
    before_all = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    assert pipeline.gate_and_promote(cfg, f"gate_hist/{v1}", reason="first").promoted
    between_1_2 = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    assert pipeline.gate_and_promote(cfg, f"gate_hist/{v2}", reason="same quality, newer data").promoted
    assert registry.resolve(cfg, "gate_hist@previous").version == v1
    between_2_3 = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    assert (
        main(
            [
                "rollback",
                "gate_hist",
                "--reason",
                "v2 misbehaves",
                "--config",
                _yaml(raw, "gate_hist", tmp_path),
            ]
        )
        == 0
    )
    after = dt.datetime.now(dt.UTC)

    assert registry.champion(cfg, "gate_hist").version == v1
    with pytest.raises(VersionNotFoundError):
        registry.resolve(cfg, "gate_hist@previous")  # v1 was the first champion: nothing before it
    moves = [m for m in registry.history(cfg, "gate_hist") if m.alias == "champion"]
    assert [(m.action, m.from_version, m.to_version) for m in moves] == [
        ("promote", None, v1),
        ("promote", v1, v2),
        ("rollback", v2, v1),
    ]
    assert [m.reason for m in moves] == ["first", "same quality, newer data", "v2 misbehaves"]
    assert moves[0].gate_report_id and moves[1].gate_report_id and moves[2].gate_report_id is None
    assert moves[0].ts < moves[1].ts < moves[2].ts and all(m.actor for m in moves)
    assert registry.champion_at(cfg, before_all, "gate_hist") is None
    assert registry.champion_at(cfg, between_1_2, "gate_hist") == v1
    assert registry.champion_at(cfg, between_2_3, "gate_hist") == v2
    assert registry.champion_at(cfg, after, "gate_hist") == v1

    capsys.readouterr()
    config_path = _yaml(raw, "gate_hist", tmp_path)
    assert main(["history", "gate_hist", "--at", between_2_3.isoformat(), "--config", config_path]) == 0
    assert f"version {v2}" in capsys.readouterr().out
    assert main(["history", "gate_hist", "--config", config_path]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " champion " in line]
    assert [line.split()[3] for line in lines] == ["promote", "promote", "rollback"]
    with pytest.raises(PromotionError, match="no previous champion"):
        registry.rollback(cfg, "gate_hist", reason="again")


def test_promote_cli_refuses_without_reason_and_force_is_recorded(runs, capsys, tmp_path):
    raw, _, poor = runs
    cfg = _named(raw, "gate_force")
    version = registry.register(poor, cfg).version
    config_path = _yaml(raw, "gate_force", tmp_path)
    assert main(["promote", f"gate_force/{version}", "--reason", " ", "--config", config_path]) == 2
    assert "needs a reason" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        registry.promote(cfg, f"gate_force/{version}", reason="")
    with pytest.raises(PromotionError, match="only through the gate"):
        registry.set_alias(cfg, "champion", version, "gate_force")
    assert (
        main(["promote", f"gate_force/{version}", "--force", "--reason", "hotfix", "--config", config_path])
        == 0
    )
    (move,) = [m for m in registry.history(cfg, "gate_force") if m.alias == "champion"]
    assert (move.action, move.forced, move.to_version, move.reason) == (
        "force-promote",
        True,
        version,
        "hotfix",
    )


def test_evaluate_cli_exit_status_follows_the_gate(runs, capsys, tmp_path):
    raw, good, _ = runs
    cfg = _named(raw, "gate_cli")
    version = registry.register(good, cfg).version
    strict = {**raw, "name": "gate_cli", "gate": {"rules": [{"metric": "accuracy", "threshold": 0.999}]}}
    assert main(["evaluate", f"gate_cli/{version}", "--config", _yaml(raw, "gate_cli", tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gate PASSED" in out and "permutation importance" in out and "plan=premium" in out
    assert (
        main(["evaluate", f"gate_cli/{version}", "--no-log", "--config", _yaml(strict, "gate_cli", tmp_path)])
        == 1
    )
    assert "FAIL accuracy threshold [overall]" in capsys.readouterr().out


def _yaml(raw, name, folder):
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**raw, "name": name}))
    return str(path)


def test_repeated_rollbacks_walk_back_instead_of_swinging(runs):
    raw, good, _ = runs
    cfg = _named(raw, "gate_walk")
    v1, v2, v3 = (registry.register(good, cfg).version for _ in range(3))
    for version in (v1, v2, v3):
        registry.promote(cfg, f"gate_walk/{version}", reason=f"v{version}", force=True)
    registry.rollback(cfg, "gate_walk", reason="3 is bad")
    assert (registry.champion(cfg, "gate_walk").version, _previous(cfg)) == (v2, v1)
    registry.rollback(cfg, "gate_walk", reason="2 is bad too")
    assert (registry.champion(cfg, "gate_walk").version, _previous(cfg)) == (v1, None)
    # the reviewer's case: after a rollback, promote and roll back again: back to v1, not v2
    registry.promote(cfg, f"gate_walk/{v3}", reason="fixed 3", force=True)
    registry.rollback(cfg, "gate_walk", reason="still bad")
    assert (registry.champion(cfg, "gate_walk").version, _previous(cfg)) == (v1, None)
    forced = [m for m in registry.history(cfg, "gate_walk") if m.action == "force-promote"]
    assert all(m.forced and m.gate_report_id is None for m in forced)


def _previous(cfg):
    try:
        return registry.resolve(cfg, f"{cfg.name}@previous").version
    except VersionNotFoundError:
        return None
