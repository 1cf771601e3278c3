"""``raymlops data``: ingest, list, show, profile and generate data versions."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raymlops.cli._common import (
    add_config,
    indent,
    parse_version,
    project_config,
    render_table,
    say,
    usage,
    with_runtime,
)


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="ingest, list and inspect data versions", description="Data versions.")
    data_sub = data.add_subparsers(title="data commands", metavar="COMMAND")
    data.set_defaults(handler=lambda _a: usage(data))

    ingest = data_sub.add_parser(
        "ingest",
        help="validate a CSV/Parquet/Delta source and commit it as a new data version",
        description=(
            "Read SOURCE with Ray Data, check it against data.schema (columns, dtypes, ranges, "
            "allowed categories, nulls, duplicate ids) and append the valid rows to the Delta "
            "table as one new version. With --on-invalid fail (the default) a single bad row "
            "stops the ingest and nothing is written; with quarantine the bad rows go to "
            "<table>_quarantine with their reasons."
        ),
    )
    ingest.add_argument("source", help="CSV or Parquet file or folder, or a Delta table")
    add_config(ingest)
    ingest.add_argument("--mode", choices=("append", "overwrite"), help="default: data.mode")
    ingest.add_argument("--on-invalid", choices=("fail", "quarantine"), help="default: data.on_invalid")
    ingest.set_defaults(handler=_cmd_data_ingest)

    versions = data_sub.add_parser(
        "versions", help="list the data versions of the table", description="List every data version."
    )
    add_config(versions)
    versions.set_defaults(handler=_cmd_data_versions)

    show = data_sub.add_parser(
        "show",
        help="show one data version: digest, counts, source, schema and sample rows",
        description="Show one data version (use 'latest' for the newest).",
    )
    show.add_argument("version", help="version number or 'latest'")
    add_config(show)
    show.add_argument("--rows", type=int, default=5, help="sample rows to print (default 5)")
    show.set_defaults(handler=_cmd_data_show)

    profile = data_sub.add_parser(
        "profile",
        help="split a version and print the reference profile of its training split",
        description=(
            "Prepare a data version (deterministic split, preprocessors fitted on the training "
            "split) and print the reference profile that drift monitoring compares against."
        ),
    )
    profile.add_argument("version", nargs="?", default="latest", help="version number or 'latest' (default)")
    add_config(profile)
    profile.add_argument("--json", action="store_true", help="print the profile as JSON")
    profile.set_defaults(handler=_cmd_data_profile)

    generate = data_sub.add_parser(
        "generate",
        help="write demo churn data (optionally shifted) to a CSV or Parquet file",
        description="Write the built-in demo dataset, e.g. to try ingest or to simulate drift.",
    )
    generate.add_argument("output", help="file to write (.csv or .parquet)")
    generate.add_argument("--rows", type=int, default=5000)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="FEATURE=STDS",
        help="shift a numeric feature by STDS standard deviations (repeatable)",
    )
    generate.add_argument(
        "--concept-shift", type=float, default=0.0, help="0..1: change the label relationship"
    )
    generate.set_defaults(handler=_cmd_data_generate)


def _cmd_data_ingest(args: argparse.Namespace) -> int:
    from raymlops import data

    config = project_config(args)

    def run() -> int:
        v = data.ingest(args.source, config, mode=args.mode, on_invalid=args.on_invalid, progress=say)
        print(_version_table([v]))
        return 0

    return with_runtime(config, run)


def _cmd_data_versions(args: argparse.Namespace) -> int:
    from raymlops import data

    config = project_config(args)
    versions = data.list_versions(config.table_uri)
    if not versions:
        print(f"no data versions in {config.table_uri}; ingest with `raymlops data ingest SOURCE`")
        return 0
    print(f"table {config.table_uri}")
    print(_version_table(versions))
    return 0


def _version_table(versions: Sequence[Any]) -> str:
    rows = [
        (
            v.version,
            v.created_at,
            v.mode,
            f"+{v.num_rows_added}",
            v.num_rows,
            v.num_rows_quarantined,
            v.short_digest,
            v.added_digest[:12],
            v.source_uri,
        )
        for v in versions
    ]
    return render_table(
        rows,
        ("version", "created", "mode", "added", "rows", "quarantined", "digest", "added digest", "source"),
    )


def _cmd_data_show(args: argparse.Namespace) -> int:
    from raymlops import data

    config = project_config(args)
    v = data.get_version(config.table_uri, parse_version(args.version))
    print(f"version      {v.version} of {v.table_uri}")
    print(f"created      {v.created_at} ({v.mode} from {v.source_uri})")
    print(f"rows         {v.num_rows} (+{v.num_rows_added} added, {v.num_rows_quarantined} quarantined)")
    print(f"digest       {v.digest}")
    print(f"added digest {v.added_digest}")
    print("schema")
    schema = v.schema
    rows: list[tuple[Any, ...]] = [
        (
            f.name,
            f.kind,
            f.dtype,
            "yes" if f.nullable else "no",
            _range(f.min, f.max),
            ", ".join(map(str, f.allowed)) if f.allowed else "",
        )
        for f in schema.features
    ]
    rows.append(
        (
            schema.label.name,
            "label",
            schema.label.dtype,
            "no",
            "",
            ", ".join(map(str, schema.label.classes or ())),
        )
    )
    print(indent(render_table(rows, ("column", "kind", "dtype", "nullable", "range", "allowed"))))
    if args.rows > 0:
        table = data.head(v, args.rows)
        print(f"first {table.num_rows} rows")
        print(indent(table.to_pandas().to_string(index=False)))
    return 0


def _range(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return ""
    return f"[{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]"


def _cmd_data_profile(args: argparse.Namespace) -> int:
    from raymlops import data

    config = project_config(args)
    v = data.get_version(config.table_uri, parse_version(args.version))

    def run() -> int:
        prepared = data.prepare(v, config)
        if args.json:
            print(prepared.profile.to_json())
        else:
            print(_prepared_summary(prepared))
        return 0

    return with_runtime(config, run)


def _prepared_summary(prepared: Any) -> str:
    v = prepared.dataset_version
    train, validation, test = prepared.split_num_rows
    lines = [
        f"version {v.version} ({v.short_digest}): train {train}, validation {validation}, test {test} rows; "
        f"{prepared.feature_dim} model inputs after preprocessing",
        "reference profile of the training split (numeric):",
    ]
    rows = [
        (
            p.name,
            p.num_nulls,
            f"{p.mean:.3g}",
            f"{p.std:.3g}",
            f"{p.min:.3g}",
            f"{p.max:.3g}",
            len(p.counts),
            " ".join(f"{e:.3g}" for e in p.bin_edges[1:-1]),
        )
        for p in prepared.profile.numeric
    ]
    lines.append(
        indent(render_table(rows, ("column", "nulls", "mean", "std", "min", "max", "bins", "inner edges")))
    )
    lines.append("reference profile of the training split (categorical):")
    categorical_rows = [
        (p.name, p.num_nulls, ", ".join(f"{k}={c}" for k, c in p.frequencies))
        for p in prepared.profile.categorical
    ]
    lines.append(indent(render_table(categorical_rows, ("column", "nulls", "frequencies"))))
    return "\n".join(lines)


def _cmd_data_generate(args: argparse.Namespace) -> int:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from raymlops import data
    from raymlops.errors import ConfigError

    shift = {}
    for item in args.shift:
        name, _, amount = item.partition("=")
        try:
            shift[name] = float(amount)
        except ValueError:
            raise ConfigError(f"--shift takes FEATURE=STDS, e.g. income_k=0.5; got {item!r}") from None
    try:
        table = data.generate_demo_data(
            args.rows, seed=args.seed, shift=shift, concept_shift=args.concept_shift
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        pq.write_table(table, out)
    else:
        pacsv.write_csv(table, out)
    print(f"wrote {table.num_rows} rows to {out}")
    return 0
