"""The drift report a person reads: a self-contained HTML page and the same table for a terminal.

Histograms are inline SVG (no plotting library, no external file): the
reference bar from the training profile beside the window's bar, over the
profile's own quantile bins for a numeric feature and per category for a
categorical one.
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from raymlops._internal.files import replace_text
from raymlops.config import ProjectConfig
from raymlops.monitor._report import (
    DriftReport,
    FeatureDrift,
    Reference,
    _CategoricalRef,
    _NumericRef,
    drift_report,
)

if TYPE_CHECKING:
    import pandas as pd

_REF_COLOUR = "#7f8c8d"
_CUR_COLOUR = "#e67e22"


@dataclasses.dataclass(frozen=True)
class ReportPage:
    """A rendered report: where the HTML went and the table that was printed."""

    report: DriftReport
    html_path: str
    table: str


COLUMNS = ("feature", "kind", "test", "statistic", "p-value", "threshold", "verdict", "values")


def _tested(report: DriftReport) -> tuple[FeatureDrift, ...]:
    """Every feature's result, then the prediction's (when the report has one)."""
    return (*report.features, *([report.prediction] if report.prediction else []))


def _cells(f: FeatureDrift) -> tuple[str, ...]:
    """One result as the table's cells, in ``COLUMNS`` order."""
    return (
        f.feature + (" (critical)" if f.critical else ""),
        f.kind,
        f.test,
        _number(f.statistic),
        _number(f.p_value) if f.p_value is not None else "-",
        _number(f.threshold),
        "DRIFT" if f.drifted else "ok",
        str(f.num_values),
    )


def table_text(report: DriftReport) -> str:
    """The per-feature table, one line per feature, drifted ones marked."""
    rows: list[tuple[str, ...]] = [COLUMNS[:-1]]
    for f in _tested(report):
        rows.append(_cells(f)[:-1])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    span = f"{report.window_start} .. {report.window_end}" if report.window_start else "unknown span"
    verdict = "DRIFTED" if report.drifted else "no drift"
    lines.append(f"window: {report.num_rows} rows, {span}; {verdict}: {report.reason}")
    return "\n".join(lines)


def render_html(
    report: DriftReport, reference: Reference, window: pd.DataFrame, *, title: str, facts: dict[str, Any]
) -> str:
    """One HTML page: facts, the verdict, the statistics table and a histogram per feature."""
    cards = []
    for f in _tested(report):
        ref = reference.prediction if f.feature == "prediction" else _ref(reference, f.feature)
        if ref is None or f.feature not in window.columns:
            continue
        cards.append(
            f'<div class="card{" drift" if f.drifted else ""}"><h3>{html.escape(f.feature)} '
            f"<small>{html.escape(f.test)} {_number(f.statistic)} "
            f"{'DRIFT' if f.drifted else 'ok'}</small></h3>{_histogram(ref, window[f.feature])}</div>"
        )
    fact_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()
    )
    verdict = "DRIFTED" if report.drifted else "no drift"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
.drift{{background:#fdecea}} .verdict{{font-size:1.3em;font-weight:bold}}
.grid{{display:flex;flex-wrap:wrap;gap:1em}} .card{{border:1px solid #ddd;padding:.5em}}
.legend span{{display:inline-block;width:1em;height:1em;margin:0 .3em 0 1em;vertical-align:middle}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{fact_rows}</table>
<p class="verdict">{verdict}: {html.escape(report.reason)}</p>
{_stats_table(report)}
<p class="legend"><span style="background:{_REF_COLOUR}"></span>reference (training split)
<span style="background:{_CUR_COLOUR}"></span>window</p>
<div class="grid">{"".join(cards)}</div>
</body></html>
"""


def _stats_table(report: DriftReport) -> str:
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in COLUMNS)
    rows = [_stats_row(f) for f in _tested(report)]
    return f"<table>{head}</tr>{''.join(rows)}</table>"


def _stats_row(f: FeatureDrift) -> str:
    inner = "".join(f"<td>{html.escape(c)}</td>" for c in _cells(f))
    return f'<tr class="{"drift" if f.drifted else ""}">{inner}</tr>'


def _ref(reference: Reference, name: str) -> _NumericRef | _CategoricalRef | None:
    return reference.numeric.get(name) or reference.categorical.get(name)


def _histogram(ref: _NumericRef | _CategoricalRef, values: pd.Series) -> str:
    """Reference and window shares side by side, as an SVG bar chart."""
    if isinstance(ref, _NumericRef):
        edges = np.asarray(ref.profile.bin_edges, dtype=np.float64)
        ref_counts = np.asarray(ref.profile.counts, dtype=np.float64)
        current = values.to_numpy(dtype=np.float64, na_value=np.nan)
        current = current[np.isfinite(current)]
        clipped = np.clip(current, edges[0], edges[-1])  # out-of-range values count in the outer bins
        cur_counts = np.histogram(clipped, bins=edges)[0].astype(np.float64)
        labels = [f"{_number(edges[i])}..{_number(edges[i + 1])}" for i in range(len(edges) - 1)]
    else:
        from raymlops.monitor._stats import frequency_table

        labels, ref_counts, cur_counts = frequency_table(ref.counts, values.tolist())
    ref_share = ref_counts / max(ref_counts.sum(), 1.0)
    cur_share = cur_counts / max(cur_counts.sum(), 1.0)
    num = len(labels)
    if num == 0:
        return "<p>no bins</p>"
    width, height, pad = 360, 140, 20
    slot = (width - pad) / num
    top = max(float(ref_share.max(initial=0)), float(cur_share.max(initial=0)), 1e-9)
    bars = []
    for i, label in enumerate(labels):
        for j, (share, colour) in enumerate(((ref_share[i], _REF_COLOUR), (cur_share[i], _CUR_COLOUR))):
            h = (height - pad) * float(share) / top
            x = pad + i * slot + j * slot / 2
            bars.append(
                f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{max(slot / 2 - 1, 1):.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{html.escape(str(label))}: '
                f"{'reference' if j == 0 else 'window'} {float(share):.3f}</title></rect>"
            )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width}" y2="{height - pad}" stroke="#999"/>'
        + "".join(bars)
        + f'<text x="{pad}" y="{height - 4}" font-size="10">{html.escape(str(labels[0]))}</text>'
        + f'<text x="{width}" y="{height - 4}" font-size="10" text-anchor="end">'
        + f"{html.escape(str(labels[-1]))}</text></svg>"
    )


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4g}"


def write_report(
    config: ProjectConfig, *, num_rows: int | None = None, path: str | None = None
) -> ReportPage:
    """Judge the newest ``num_rows`` logged rows (default ``monitoring.window_size``) against the champion.

    Ray-free: reads the inference log with ``deltalake`` and the champion's
    profile from MLflow. Writes ``<home>/monitor/<model>/report.html`` unless
    ``path`` says otherwise.

    Raises:
        MonitoringError: no champion yet, or nothing logged yet.
    """
    import datetime as dt

    import pyarrow.dataset as pads

    from raymlops import registry
    from raymlops.contracts.logs import TS
    from raymlops.errors import MonitoringError
    from raymlops.monitor._monitor import version_reference
    from raymlops.monitor._production import read_delta

    champion = registry.champion(config)
    if champion is None:
        raise MonitoringError(
            f"{config.name} has no champion, so there is no reference to compare with; "
            "promote a model first (`raymlops promote`)"
        )
    size = num_rows or config.monitoring.window_size
    logged = read_delta(config.inference_log_uri, None, pads.scalar(True))
    if logged is None or logged.num_rows == 0:
        raise MonitoringError(
            f"nothing logged for {config.name} yet ({config.inference_log_uri}); "
            "send traffic to the endpoint first"
        )
    window = logged.sort_by([(TS, "descending")]).slice(0, size).to_pandas()
    reference, baseline = version_reference(config, champion.version)
    report = drift_report(reference, window, time_column=TS)
    target = str(path) if path else config.locations.report_uri
    facts = {
        "model": f"{config.name} version {champion.version} (champion)",
        "window": f"newest {report.num_rows} of {logged.num_rows} logged rows",
        "span": f"{report.window_start} .. {report.window_end}",
        "drift share": f"{report.drift_share:.2f} (threshold {config.monitoring.drift_share})",
        "correction": config.monitoring.correction,
        "holdout metric": f"{baseline.value:.4f} on {baseline.num_rows or '?'} rows" if baseline else "n/a",
        "live metric": _live_metric(config),
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    page = render_html(report, reference, window, title=f"Drift report: {config.name}", facts=facts)
    replace_text(target, page)
    return ReportPage(report, target, table_text(report))


def _live_metric(config: ProjectConfig) -> str:
    """The monitor's last live-metric judgement, with its test, from its persisted state."""
    from raymlops.monitor._performance import describe
    from raymlops.monitor._state import MonitorState

    state = MonitorState.load(config.locations.monitor_state_uri)
    perf = state.last_performance if state else None
    return describe(perf) if perf else "no labelled window judged yet"
