"""`python -m bench [--quick] [--only N,...]`: run the six benchmarks and print one table."""

from __future__ import annotations

import argparse
import importlib
import time

from rich.console import Console

from bench.table import Row, render

# Each module exposes `run(quick: bool) -> list[Row]`.
BENCHMARKS = {
    "1": "bench.search",
    "2": "bench.http",
    "3": "bench.fanout",
    "4": "bench.procurement",
    "5": "bench.reconciler",
    "6": "bench.reads",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmarks run, not speed")
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers, e.g. 1,3")
    args = parser.parse_args()
    chosen = [key.strip() for key in args.only.split(",") if key.strip()] or list(BENCHMARKS)
    console = Console(width=200)
    rows: list[Row] = []
    started = time.perf_counter()
    for key in chosen:
        module = importlib.import_module(BENCHMARKS[key])
        console.print(f"[bold]running benchmark {key} ({BENCHMARKS[key]})[/bold]")
        rows.extend(module.run(quick=args.quick))
    render(rows, console)
    console.print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
