"""Every benchmark runs end to end at its quick size: correctness only (the benchmarks check
their own answers, e.g. identical search pages, no errors under load); never timing."""

from __future__ import annotations

import importlib
import math

import pytest
from bench.__main__ import BENCHMARKS
from bench.table import Row, render
from rich.console import Console

# Module names, one per benchmark: each engineer adds theirs here.
QUICK_BENCHMARKS = [
    "bench.search",
    "bench.http",
    "bench.fanout",
    "bench.procurement",
    "bench.reconciler",
    "bench.reads",
    "bench.scale",
]


@pytest.mark.parametrize("module_name", QUICK_BENCHMARKS)
def test_benchmark_runs_quick(module_name: str) -> None:
    rows = importlib.import_module(module_name).run(quick=True)
    assert rows, f"{module_name} returned no rows"
    for row in rows:
        assert isinstance(row, Row)
        assert row.benchmark and row.metric
        assert math.isfinite(row.ours) and row.ours >= 0, row
        if row.baseline is not None:
            assert math.isfinite(row.baseline) and row.baseline >= 0, row
        if row.goal:
            assert row.met is not None, f"{row}: a goal without a verdict"
    console = Console(width=200, record=True)
    render(rows, console)
    assert rows[0].benchmark in console.export_text()


def test_every_listed_module_is_a_benchmark_of_the_table() -> None:
    assert set(QUICK_BENCHMARKS) <= set(BENCHMARKS.values())


@pytest.mark.parametrize(
    ("metric", "ours", "baseline", "ratio"),
    [
        ("p50 ms/query", 0.5, 10.0, 20.0),  # a time: the baseline's over ours
        ("req/s", 500.0, 1000.0, 0.5),  # a throughput: ours over the baseline's
        ("req/s", 0.0, 1000.0, None),
        ("p50 ms", 1.0, None, None),
    ],
)
def test_ratio_direction(metric: str, ours: float, baseline: float | None, ratio: float | None) -> None:
    assert Row("x", metric, ours, baseline).ratio == ratio
