"""Findings of a fuzz run: each kind of failure once, with its count and the smallest input
that showed it; printed, or kept whole as JSON."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Finding:
    """One kind of failure: how often it was seen, and its smallest reproducer."""

    kind: str
    """What went wrong, in a few words; findings are grouped by it."""
    detail: str
    """What the judge saw, for the smallest reproducer."""
    reproducer: str
    """The smallest input that showed it."""
    count: int = 0


@dataclass
class FuzzReport:
    """What one fuzz area tried and what it found."""

    area: str
    inputs: int = 0
    """Frames or requests actually sent to the server."""
    examples: int = 0
    """Hypothesis examples (one example may send several inputs)."""
    seconds: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)
    """Benign events worth counting (reconnects after documented closes, rate limiting)."""

    def fail(self, kind: str, detail: str, reproducer: str) -> None:
        finding = self.findings.get(kind)
        if finding is None:
            finding = self.findings[kind] = Finding(kind, detail, reproducer)
        elif len(reproducer) < len(finding.reproducer):
            finding.detail, finding.reproducer = detail, reproducer
        finding.count += 1

    def fail_server_log(self, problems: list[tuple[str, str]], reproducer: str) -> None:
        """One failure per new problem in the server's log (`LogWatch.new_problems`)."""
        for what, line in problems:
            self.fail(f"server log: {what}", line, reproducer)

    @property
    def failures(self) -> int:
        return sum(f.count for f in self.findings.values())

    def describe(self, width: int = 500) -> str:
        """A summary; reproducers longer than `width` are elided (as_json keeps them whole)."""
        lines = [
            f"{self.area}: {self.inputs} inputs in {self.examples} examples, {self.seconds:.1f} s,"
            f" {self.failures} failures of {len(self.findings)} kinds"
        ]
        for finding in sorted(self.findings.values(), key=lambda f: f.kind):
            shown = finding.reproducer
            if len(shown) > width:
                shown = f"{shown[: width - 80]} …[{len(shown)} chars]… {shown[-60:]}"
            lines.append(f"  FAIL x{finding.count}: {finding.kind}")
            lines.append(f"      saw:   {finding.detail}")
            lines.append(f"      input: {shown}")
        if self.notes:
            lines.append(
                "  notes: " + ", ".join(f"{k} x{n}" for k, n in sorted(self.notes.items()))
            )
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "inputs": self.inputs,
            "examples": self.examples,
            "seconds": round(self.seconds, 2),
            "failures": self.failures,
            "findings": [
                {"kind": f.kind, "count": f.count, "detail": f.detail, "reproducer": f.reproducer}
                for f in self.findings.values()
            ],
            "notes": dict(self.notes),
        }

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> FuzzReport:
        report = cls(entry["area"], entry["inputs"], entry["examples"], entry["seconds"])
        for f in entry["findings"]:
            report.findings[f["kind"]] = Finding(
                f["kind"], f["detail"], f["reproducer"], f["count"]
            )
        report.notes.update(entry.get("notes", {}))
        return report
