"""`gpusupply gpus`: every GPU family on offer, with its price range, memory and vendors (like
`sky show-gpus`), filtered by GPU memory, GPUs per offer and region."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from gpusupply.cli import output
from gpusupply.cli.commands import (
    PANEL,
    ApiKeyOption,
    JsonOption,
    OutputOption,
    Region,
    UrlOption,
    WideOption,
    connect,
    handled,
    print_table,
    shape,
)
from gpusupply.contract.schemas import OfferOut


@dataclass(slots=True)
class FamilySummary:
    family: str
    models: list[str]
    offers: int = 0
    min_price: float | None = None
    max_price: float | None = None
    min_memory: float | None = None
    max_memory: float | None = None
    vendors: set[str] = field(default_factory=set)

    def add(self, offer: OfferOut) -> None:
        self.offers += 1
        price, memory = offer.gpu_price_per_hour, offer.gpu_memory_in_gb
        self.min_price = price if self.min_price is None else min(self.min_price, price)
        self.max_price = price if self.max_price is None else max(self.max_price, price)
        self.min_memory = memory if self.min_memory is None else min(self.min_memory, memory)
        self.max_memory = memory if self.max_memory is None else max(self.max_memory, memory)
        self.vendors.add(offer.vendor)

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family, "models": self.models, "offers": self.offers,
            "min_price_per_gpu_hour": self.min_price, "max_price_per_gpu_hour": self.max_price,
            "min_gpu_memory_gb": self.min_memory, "max_gpu_memory_gb": self.max_memory, "vendors": sorted(self.vendors),
        }


def summarize(known: dict[str, list[str]], offers: dict[str, list[OfferOut]], min_memory: float | None) -> list[FamilySummary]:
    """One summary per family, from its offers (those with at least `min_memory` GB a GPU). Pure."""
    summaries = []
    for family, models in known.items():
        summary = FamilySummary(family, list(models))
        for offer in offers.get(family, []):
            if min_memory is None or offer.gpu_memory_in_gb >= min_memory:
                summary.add(offer)
        summaries.append(summary)
    return summaries


def span(low: float | None, high: float | None, show: Any) -> str:
    if low is None or high is None:
        return "-"
    return show(low) if show(low) == show(high) else f"{show(low)}-{show(high)}"


def gb(value: float) -> str:
    return f"{value:.0f} GB"


COLUMNS = (
    output.Column("GPU", keep=9), output.Column("MEMORY", keep=7), output.Column("$/GPU-HOUR", keep=9),
    output.Column("OFFERS", keep=5, right=True), output.Column("VENDORS", keep=8, flex=True),
    output.Column("MODELS", wide_only=True),
)


def gpus(
    memory: Annotated[float | None, typer.Option("--memory", min=0, help="Only GPUs with at least this much memory (GB).")] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="GPUs per offer.")] = 1,
    region: Annotated[Region | None, typer.Option("--region", case_sensitive=False, help="Region group.")] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also families nobody offers now.")] = False,
    wide: WideOption = False,
    output_format: OutputOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Every GPU family on offer: price range per GPU-hour, memory, offers and vendors."""
    wide, json_output = shape(wide, output_format, json_output)
    with connect(url, api_key) as gs:
        known = gs.available_gpus()
        offers = {
            family: list(gs.iter_offers(family, gpu_count=count, region=region.value if region else None, page_size=1000))
            for family in known
        }
    summaries = [s for s in summarize(known, offers, memory) if all_ or s.offers]
    summaries.sort(key=lambda s: (s.min_price is None, s.min_price or 0.0, s.family))
    if json_output:
        output.print_json([s.as_dict() for s in summaries])
        return
    if not summaries:
        output.console(stderr=True).print("no GPUs on offer match (--all lists every known family)")
        return
    rows = [
        [s.family, span(s.min_memory, s.max_memory, gb), span(s.min_price, s.max_price, output.money), str(s.offers),
         ", ".join(sorted(s.vendors)) or "-", ", ".join(s.models)]
        for s in summaries
    ]
    print_table(COLUMNS, rows, wide=wide)
    typer.echo(f"{count} GPU{'s' if count > 1 else ''} per offer, cheapest first; `gpusupply offers GPU` lists the offers")


def register(app: typer.Typer) -> None:
    app.command("gpus", rich_help_panel=PANEL)(handled(gpus))
