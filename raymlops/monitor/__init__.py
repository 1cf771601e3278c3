"""Monitoring: drift statistics on live traffic against the training reference.

So far: the statistics (``_stats``), pure NumPy/SciPy functions, and the
window report and retrain policy built on them (``_report``). None needs Ray;
the monitoring actor that feeds them live traffic comes next.
"""

from raymlops.monitor._report import Decision, DriftPolicy, DriftReport, FeatureDrift, Reference, drift_report
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
    psi,
    wasserstein,
)

__all__ = [
    "TESTS",
    "Decision",
    "DriftPolicy",
    "DriftReport",
    "DriftTest",
    "FeatureDrift",
    "Reference",
    "chi2",
    "corrected",
    "default_test",
    "drift_report",
    "frequency_table",
    "get_test",
    "jensen_shannon",
    "ks",
    "normalised_wasserstein",
    "psi",
    "wasserstein",
]
