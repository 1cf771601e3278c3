"""``train``, ``tune``, ``models``, ``evaluate``, ``promote``, ``rollback``, ``history``.

Model versions, the gate, and the aliases that say which version serves.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from raymlops.cli._common import (
    EXIT_REJECTED,
    add_config,
    parse_version,
    project_config,
    render_table,
    say,
    usage,
    with_runtime,
)


def register(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train on a data version with Ray Train and register the model in MLflow",
        description=(
            "Prepare a data version (default: the latest), train the configured model with a Ray "
            "Train TorchTrainer (training.num_workers workers, a checkpoint every epoch, resuming "
            "after worker failures), track the run in MLflow and register the model bundle "
            "(preprocessor, weights, schema, reference profile) as a new model version."
        ),
    )
    add_config(train)
    train.add_argument("--data-version", default="latest", help="data version number or 'latest' (default)")
    train.set_defaults(handler=_cmd_train)

    tune = sub.add_parser(
        "tune",
        help="sweep hyperparameters with Ray Tune + ASHA and register the best trial",
        description=(
            "Run tuning.num_samples trials over tuning.search_space (uniform, loguniform, choice, "
            "randint), each a full Ray Train run and an MLflow child run of the sweep's parent run. "
            "ASHA stops trials that fall behind after tuning.grace_period epochs; at most "
            "tuning.max_concurrent_trials run at once and tuning.time_budget_s bounds the sweep. "
            "The best finished trial is registered as a new model version."
        ),
    )
    add_config(tune)
    tune.add_argument("--data-version", default="latest", help="data version number or 'latest' (default)")
    tune.set_defaults(handler=_cmd_tune)

    models = sub.add_parser(
        "models",
        help="list registered model versions and show their lineage",
        description="The MLflow model registry.",
    )
    models_sub = models.add_subparsers(title="models commands", metavar="COMMAND")
    models.set_defaults(handler=lambda _a: usage(models))
    models_list = models_sub.add_parser(
        "list",
        help="list the versions of a model",
        description="List every version of a model with its aliases and metrics.",
    )
    models_list.add_argument("name", nargs="?", help="model name (default: the config's name)")
    add_config(models_list)
    models_list.set_defaults(handler=_cmd_models_list)
    models_show = models_sub.add_parser(
        "show",
        help="show one version's lineage: run, data version, code commit, config",
        description="Show NAME, NAME/VERSION or NAME@ALIAS: run, data version, commit, config hash, metrics.",
    )
    models_show.add_argument("ref", help="NAME (newest), NAME/VERSION or NAME@ALIAS")
    add_config(models_show)
    models_show.set_defaults(handler=_cmd_models_show)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a model version on the holdout and run the validation gate against the champion",
        description=(
            "Score NAME/VERSION and the current champion on the same holdout rows (the test split of "
            "the latest data version, or --data-version): task metrics, metrics per slice "
            "(data.schema.slice_columns), permutation feature importance and fairness gaps "
            "(data.schema.sensitive_columns). Then apply the gate rules of the config's gate section "
            "and print the report. The report is logged to the version's MLflow run (gate/<id>.json "
            "and .md). Exit status: 0 when the gate passes, 1 when it rejects the version."
        ),
    )
    evaluate.add_argument("ref", help="NAME/VERSION, NAME@ALIAS or NAME (newest version)")
    add_config(evaluate)
    evaluate.add_argument("--data-version", default="latest", help="data version whose holdout to use")
    evaluate.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    evaluate.set_defaults(handler=_cmd_evaluate)

    promote = sub.add_parser(
        "promote",
        help="make a version the champion if it passes the gate (audited)",
        description=(
            "Run the gate on NAME/VERSION against the current champion; if it passes, point the "
            "'champion' alias at it and 'previous' at the old champion, and append both moves to the "
            "alias history with your reason. A rejected version leaves every alias where it is "
            "(exit 1). --force skips the gate and is recorded as a forced promotion."
        ),
    )
    promote.add_argument("ref", help="NAME/VERSION or NAME@ALIAS (e.g. churn@challenger)")
    promote.add_argument("--reason", required=True, help="why (kept in the alias history)")
    promote.add_argument("--force", action="store_true", help="promote without the gate (recorded as forced)")
    add_config(promote)
    promote.add_argument("--data-version", default="latest", help="data version whose holdout the gate uses")
    promote.set_defaults(handler=_cmd_promote)

    rollback = sub.add_parser(
        "rollback",
        help="restore the previous champion (audited)",
        description=(
            "Point 'champion' back at the 'previous' version. 'previous' then moves to the champion "
            "before that one, so a second rollback goes further back. Recorded in the alias history."
        ),
    )
    rollback.add_argument("name", nargs="?", help="model name (default: the config's name)")
    rollback.add_argument("--reason", required=True, help="why (kept in the alias history)")
    add_config(rollback)
    rollback.set_defaults(handler=_cmd_rollback)

    history = sub.add_parser(
        "history",
        help="show every alias move of a model, or which version was champion at a time",
        description=(
            "The append-only alias history (a Delta table under the storage home): time, action, "
            "alias, from and to version, actor, reason and gate report. With --at TIME, print the "
            "version that was champion at that time (ISO 8601; UTC unless it has an offset)."
        ),
    )
    history.add_argument("name", nargs="?", help="model name (default: the config's name)")
    history.add_argument("--at", metavar="TIME", help="e.g. 2026-11-23T14:05:00 (UTC) or ...+01:00")
    add_config(history)
    history.set_defaults(handler=_cmd_history)


def _cmd_train(args: argparse.Namespace) -> int:
    return _fit_and_register(args, sweep=False)


def _cmd_tune(args: argparse.Namespace) -> int:
    return _fit_and_register(args, sweep=True)


def _fit_and_register(args: argparse.Namespace, *, sweep: bool) -> int:
    from raymlops import pipeline

    config = project_config(args)
    version = parse_version(args.data_version)
    fit = pipeline.tune_and_register if sweep else pipeline.train_and_register

    def run() -> int:
        print(fit(config, data_version=version, say=say).render())
        return 0

    return with_runtime(config, run)


def _cmd_models_list(args: argparse.Namespace) -> int:
    from raymlops import registry

    config = project_config(args)
    name = args.name or config.name
    versions = registry.list_versions(config, name)
    if not versions:
        print(f"no registered model named {name!r}; train one with `raymlops train`")
        return 0
    rows = []
    for v in versions:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_at_ms / 1000))
        rows.append(
            (
                v.version,
                created,
                ", ".join(v.aliases),
                v.tags.get("data.version", ""),
                v.tags.get("data.digest", "")[:12],
                v.run_id,
            )
        )
    print(render_table(rows, ("version", "created (UTC)", "aliases", "data version", "data digest", "run")))
    return 0


def _cmd_models_show(args: argparse.Namespace) -> int:
    from raymlops import registry

    config = project_config(args)
    print(registry.lineage(config, args.ref).render())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from raymlops import evaluate

    config = project_config(args)
    report = evaluate.gate(
        config, args.ref, data_version=parse_version(args.data_version), log=not args.no_log, progress=say
    )
    print(report.challenger.render())
    print()
    print(report.render())
    return 0 if report.passed else EXIT_REJECTED


def _cmd_promote(args: argparse.Namespace) -> int:
    from raymlops import pipeline

    config = project_config(args)
    outcome = pipeline.gate_and_promote(
        config,
        args.ref,
        reason=args.reason,
        force=args.force,
        data_version=parse_version(args.data_version),
        say=say,
    )
    if outcome.report is not None:
        print(outcome.report.render())
    if not outcome.promoted:
        print("not promoted: the champion stays where it is", file=sys.stderr)
        return EXIT_REJECTED
    for move in outcome.moves:
        print(move.render())
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from raymlops import registry

    config = project_config(args)
    for move in registry.rollback(config, args.name or config.name, reason=args.reason):
        print(move.render())
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    import datetime as dt

    from raymlops import registry
    from raymlops.errors import ConfigError

    config = project_config(args)
    name = args.name or config.name
    if args.at:
        try:
            text = args.at[:-1] + "+00:00" if args.at.endswith(("Z", "z")) else args.at  # 3.10 lacks "Z"
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"--at {args.at!r} is not an ISO 8601 time, e.g. 2026-11-23T14:05:00") from None
        version = registry.champion_at(config, when, name)
        print(f"{name} champion at {args.at}: " + (f"version {version}" if version else "none"))
        return 0
    moves = registry.history(config, name)
    if not moves:
        print(f"no alias of {name!r} has moved yet; promote a version with `raymlops promote`")
    for move in moves:
        print(move.render())
    return 0
