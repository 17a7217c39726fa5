"""The one table `make bench` prints: a row per figure, ours beside a baseline from the same run."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Row:
    benchmark: str  # e.g. "1 offer search"
    metric: str  # what was measured, with its unit: "p50 ms/query", "req/s"
    ours: float
    baseline: float | None = None  # the same metric for the baseline named in `versus`
    versus: str = ""  # what the baseline is: "gpuhunt (in memory)", "/healthz"
    goal: str = ""  # the goal as written in the issue: "ratio >= 20"
    met: bool | None = None  # None when the row has no goal of its own
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.ours == 0:
            return None
        return self.baseline / self.ours if _lower_is_better(self.metric) else self.ours / self.baseline


def _lower_is_better(metric: str) -> bool:
    """Times and counts of bad things are better small; throughputs are better large."""
    return not any(word in metric for word in ("/s", "throughput", "per second"))


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def render(rows: list[Row], console: Console | None = None) -> None:
    table = Table(title="gpusupply benchmarks (ratios measured in the same run)")
    for column in ("benchmark", "metric", "ours", "baseline", "versus", "ratio", "goal", "met", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        ratio = row.ratio
        table.add_row(
            row.benchmark,
            row.metric,
            _number(row.ours),
            _number(row.baseline),
            row.versus,
            "-" if ratio is None else f"{ratio:.2f}x",
            row.goal,
            met,
            row.note,
        )
    (console or Console(width=200)).print(table)
