"""Plain-text output of the benchmarks: tables (a header, a rule, aligned columns), figures,
target verdicts and notes."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> list[str]:
    """`columns` are (title, alignment) with alignment `<` or `>`; one line per row."""
    header = [title for title, _ in columns]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(columns))]
    lines = []
    for row in [header, *rows]:
        cells = [
            f"{cell:{align}{width}}"
            for cell, (_, align), width in zip(row, columns, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def verdict(met: bool | None) -> str:
    """Whether a target was met, as a report line says it."""
    return "not measured" if met is None else ("MET" if met else "NOT MET")


def note_lines(notes: Sequence[str]) -> list[str]:
    """The notes closing a report, after a blank line; nothing when there are none."""
    return ["", *(f"note: {note}" for note in notes)] if notes else []


def num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
