"""`python -m bench [--quick] [--only N,...]`: run the benchmarks and print one table."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
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
    "7": "bench.scale",
}


def machine() -> str:
    """What the figures were measured on (they are ratios because this varies)."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.release()}, load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmarks run, not speed")
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers, e.g. 1,3")
    args = parser.parse_args()
    chosen = [key.strip() for key in args.only.split(",") if key.strip()] or list(BENCHMARKS)
    unknown = [key for key in chosen if key not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    console = Console(width=200)
    console.print(f"machine: {machine()}")
    rows: list[Row] = []
    missing: list[str] = []
    started = time.perf_counter()
    for key in chosen:
        name = BENCHMARKS[key]
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            missing.append(f"{key} ({name})")
            console.print(f"[red]benchmark {key}: {name} is not there[/red]")
            continue
        console.print(f"[bold]running benchmark {key} ({name})[/bold]")
        rows.extend(module.run(quick=args.quick))
    render(rows, console)
    console.print(f"total wall time {time.perf_counter() - started:.0f} s; machine after: {machine()}")
    if missing:
        console.print(f"[red]not run: {', '.join(missing)}[/red]")
        sys.exit(1)


if __name__ == "__main__":
    main()
