"""What the drift monitor must not forget across a restart, as one JSON file written atomically.

A restarted actor re-runs ``__init__`` with empty memory (Ray keeps nothing).
Everything it cannot rebuild from the inference log lives here: the window
cursor, the retrain policy's streak and cooldown, counters, the labelled rows
not yet judged and every retrain job with its stage. The open window itself
and the request ids already logged are rebuilt from the inference log, which
is the durable copy of every row the monitor acknowledged.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from raymlops._internal.files import read_text, replace_text

JOB_PENDING = "pending"  # triggered, not yet accepted by the Jobs API
JOB_SUBMITTED = "submitted"  # accepted; followed until it ends
JOB_DONE = "done"  # ended; ``outcome`` says how

# not_submitted: the Jobs API never took the job (submit_max_attempts); withdrawn: the drift
# behind a trigger was gone before the job could be submitted. Neither starts the cooldown.
OUTCOMES = ("promoted", "rejected", "skipped", "failed", "not_submitted", "withdrawn")
TRIGGER_DRIFT, TRIGGER_PERFORMANCE, TRIGGER_REQUESTED = "drift", "performance", "requested"


@dataclasses.dataclass
class JobRecord:
    """One retrain trigger and the job it became."""

    submission_id: str  # deterministic per trigger: a resubmission after a restart is refused as a duplicate
    reason: str
    triggered_at: str  # ISO 8601
    stage: str = JOB_PENDING
    kind: str = TRIGGER_REQUESTED  # drift | performance | requested: what may withdraw it
    attempts: int = 0
    next_attempt_s: float = 0.0
    last_error: str = ""  # why the last submission failed (shown while the job is pending)
    status: str | None = None  # the Jobs API's status once submitted
    outcome: str | None = None  # one of OUTCOMES
    detail: str = ""
    model_version: int | None = None  # the version the job trained
    labels_through_us: int | None = None  # the newest label the job trained on

    @property
    def active(self) -> bool:
        return self.stage != JOB_DONE


@dataclasses.dataclass
class MonitorState:
    champion_version: int | None = None
    next_row: int = 0  # the next row number to give an acknowledged row
    closed_rows: int = 0  # rows below this number are in closed windows
    num_duplicates: int = 0  # rows refused because their request id was already logged
    num_windows: int = 0
    num_drifted_windows: int = 0
    streak: int = 0
    last_retrain_s: float | None = None
    num_triggers: int = 0
    jobs: list[JobRecord] = dataclasses.field(default_factory=list)
    outcome_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    feedback_cursor_us: int = 0  # feedback rows with ts above this are not read yet
    # (prediction, label) of the champion's last performance_window_size labelled rows
    labelled: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)
    num_new_labelled: int = 0  # labelled rows since the live metric was last judged
    num_labelled: int = 0
    num_performance_windows: int = 0
    last_report: dict[str, Any] | None = None
    last_decision: str = ""
    last_performance: dict[str, Any] | None = None
    last_check_at: str | None = None
    num_restarts: int = 0

    @property
    def active_job(self) -> JobRecord | None:
        return next((j for j in self.jobs if j.active), None)

    def outcomes(self) -> dict[str, int]:
        """Retrain jobs by outcome since the monitor first started (``jobs`` keeps only the recent ones)."""
        return {**dict.fromkeys(OUTCOMES, 0), **self.outcome_counts}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> MonitorState:
        raw: dict[str, Any] = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in raw.items() if k in known}
        body["jobs"] = [JobRecord(**j) for j in body.get("jobs", [])]
        body["labelled"] = [tuple(pair) for pair in body.get("labelled", [])]
        return cls(**body)

    def save(self, uri: str) -> None:
        """Replace the saved state whole: a crash leaves the old state or the new, never half."""
        replace_text(uri, self.to_json(), durable=True)

    @classmethod
    def load(cls, uri: str) -> MonitorState | None:
        text = read_text(uri)
        return None if text is None else cls.from_json(text)
