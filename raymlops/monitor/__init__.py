"""Monitoring: drift in live traffic, live accuracy from late labels, and retraining that closes the loop.

- ``_stats``: the drift statistics, pure NumPy/SciPy functions.
- ``_report``: a window of rows against the training reference → ``DriftReport``;
  ``DriftPolicy`` turns reports into retrain triggers.
- ``_monitor``: ``Monitor``, the Ray-free logic of ingest and windows, with the
  live metric (``_labels``), the retrain jobs (``_jobs``) and persisted state
  (``_state``); ``_status``: what ``monitor status`` shows.
- ``_actor``: ``DriftMonitor``, the detached Ray actor around a ``Monitor``;
  ``start``/``get``/``stop``.
- ``_production``: labelled production rows for a retrain.
- ``_html``: the HTML and terminal drift report (``write_report``).
"""

from raymlops.monitor._actor import DriftMonitor, get, start, stop
from raymlops.monitor._html import ReportPage, table_text, write_report
from raymlops.monitor._monitor import Ack, Monitor, job_result_uri, submission_id, version_reference
from raymlops.monitor._performance import describe as describe_performance
from raymlops.monitor._production import LabelledRows, feedback_since, labelled_rows, log_since
from raymlops.monitor._report import Decision, DriftPolicy, DriftReport, FeatureDrift, Reference, drift_report
from raymlops.monitor._state import JobRecord, MonitorState
from raymlops.monitor._stats import (
    TESTS,
    DriftTest,
    chi2,
    corrected,
    default_test,
    frequency_table,
    get_test,
    jensen_shannon,
    ks,
    normalised_wasserstein,
    numeric_statistics,
    psi,
    wasserstein,
)
from raymlops.monitor._status import MonitorStatus, RetrainRequest, request_retrain, status

__all__ = [
    "TESTS",
    "Ack",
    "Decision",
    "DriftMonitor",
    "DriftPolicy",
    "DriftReport",
    "DriftTest",
    "FeatureDrift",
    "JobRecord",
    "LabelledRows",
    "Monitor",
    "MonitorState",
    "MonitorStatus",
    "Reference",
    "ReportPage",
    "RetrainRequest",
    "chi2",
    "corrected",
    "default_test",
    "describe_performance",
    "drift_report",
    "feedback_since",
    "frequency_table",
    "get",
    "get_test",
    "jensen_shannon",
    "job_result_uri",
    "ks",
    "labelled_rows",
    "log_since",
    "normalised_wasserstein",
    "numeric_statistics",
    "psi",
    "request_retrain",
    "start",
    "status",
    "stop",
    "submission_id",
    "table_text",
    "version_reference",
    "wasserstein",
    "write_report",
]
