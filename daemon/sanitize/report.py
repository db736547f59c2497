"""What a sanitize run returns (:class:`SanitizeReport`), and its progress lines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from branchdb.daemon.sanitize.detect import Finding
from branchdb.daemon.sanitize.leaks import VerifyReport
from branchdb.daemon.sanitize.plan import ApplyReport, Progress


@dataclass
class SanitizeReport:
    findings: list[Finding]
    unreviewed: list[Finding]  # non-empty only with allow_unreviewed=True
    applied: ApplyReport
    verified: VerifyReport
    tables: int = 0
    rows: int = 0  # rows left in the sanitized database
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    sampling: str = ""  # the detector's sample bounds (detect.Samples.limits)

    def info(self) -> dict[str, Any]:
        """JSON-able summary to record on the snapshot (SnapshotRecord.info)."""
        return {
            "tables": self.tables,
            "rows": self.rows,
            "rules_applied": self.applied.rules_applied,
            "seconds": round(self.seconds, 3),
            "flagged": [f.where for f in self.findings],
            "allowed_unreviewed": [f.where for f in self.unreviewed],
            "originals_verified": self.verified.originals,
            "columns_searched": self.verified.columns_searched,
            "changes": self.applied.tables,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "sampling": self.sampling,
        }

    def summary(self) -> str:
        return (
            f"sanitized {self.tables} tables ({self.rows} rows): "
            f"{self.applied.rules_applied} column rules applied, "
            f"{self.verified.originals} original values verified absent from "
            f"{self.verified.columns_searched} columns in {self.seconds:.1f} s"
            + (
                f"; UNREVIEWED (allowed): {', '.join(f.where for f in self.unreviewed)}"
                if self.unreviewed
                else ""
            )
        )


def line_progress(progress: Callable[[str], None] | None) -> Progress:
    """Adapt a one-line progress callback to the sanitizer's (table, action, rows)."""

    def say(table: str, action: str, rows: int) -> None:
        if progress is not None:
            progress(f"{table}: {action} ({rows} rows)")

    return say
