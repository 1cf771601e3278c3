"""Frozen objects the data stage hands to later stages and to the user."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from raymlops.config import SchemaConfig
from raymlops.data._schema import RULES


@dataclasses.dataclass(frozen=True)
class DatasetVersion:
    """One version of the training table: what a model was trained on.

    ``read_delta(table_uri, version=version)`` rebuilds exactly these rows, and
    ``prepare`` checks them against ``digest`` before training.

    Attributes:
        table_uri: the Delta table.
        version: the Delta version number.
        digest: content digest of the whole table at this version (order-independent).
        num_rows: rows in the table at this version.
        schema: the schema the rows were validated against.
        added_digest: content digest of the rows this version added; ingesting the
            same file twice gives two versions with equal ``added_digest``.
        num_rows_added: rows this version added.
        num_rows_quarantined: rows set aside by this ingest (``on_invalid: quarantine``).
        source_uri: the file or table the rows came from.
        mode: ``append`` or ``overwrite``.
        created_at: ISO-8601 UTC time of the commit.
    """

    table_uri: str
    version: int
    digest: str
    num_rows: int
    schema: SchemaConfig
    added_digest: str
    num_rows_added: int
    num_rows_quarantined: int = 0
    source_uri: str = ""
    mode: str = "append"
    created_at: str = ""
    sums: tuple[int, int] = (0, 0)  # the additive digest state (see _digest)

    @property
    def short_digest(self) -> str:
        return self.digest[:12]

    def to_json(self) -> str:
        body = dataclasses.asdict(self)
        body["schema"] = self.schema.model_dump(mode="json", by_alias=True)
        body["sums"] = [str(s) for s in self.sums]  # JSON numbers lose precision past 2**53
        return json.dumps(body, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> DatasetVersion:
        body: dict[str, Any] = json.loads(text)
        body["schema"] = SchemaConfig.model_validate(body["schema"])
        body["sums"] = tuple(int(s) for s in body["sums"])
        return cls(**body)


@dataclasses.dataclass(frozen=True)
class RuleViolation:
    """One rule broken in one column, with how often and a few rows that break it."""

    rule: str
    column: str
    count: int
    examples: tuple[str, ...]  # rows as JSON, as read from the source

    @property
    def description(self) -> str:
        return RULES.get(self.rule, self.rule)


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """The outcome of checking a source against the schema."""

    source_uri: str
    num_rows_checked: int
    num_rows_invalid: int
    violations: tuple[RuleViolation, ...]
    dropped_columns: tuple[str, ...] = ()  # in the source, not in the schema
    null_filled_columns: tuple[str, ...] = ()  # nullable, absent from the source

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def rules(self) -> tuple[str, ...]:
        """``rule:column`` for every violation, e.g. ``range:age``."""
        return tuple(f"{v.rule}:{v.column}" for v in self.violations)

    def render(self, *, max_examples: int = 5) -> str:
        """A plain-text table a person can act on."""
        lines = [
            f"checked {self.num_rows_checked} rows: {self.num_rows_invalid} invalid, "
            f"{len(self.violations)} rule(s) violated"
        ]
        for v in self.violations:
            lines.append(f"  [{v.rule}] column {v.column!r}: {v.count} row(s) — {v.description}")
            for example in v.examples[:max_examples]:
                lines.append(f"      e.g. {example}")
        if self.dropped_columns:
            lines.append(f"  note: columns not in the schema were dropped: {', '.join(self.dropped_columns)}")
        if self.null_filled_columns:
            lines.append(
                f"  note: nullable columns absent from the source were filled with nulls: "
                f"{', '.join(self.null_filled_columns)}"
            )
        return "\n".join(lines)
