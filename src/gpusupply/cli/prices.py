"""`gpusupply prices H100 ...`: the cheapest now per vendor with a sparkline of the window, and
`gpusupply alerts add/list/delete/firings`: price alerts and buy-below orders (docs/prices.md).

A client of the SDK like `cli/commands.py`. The sparkline draws the API's own series (GET
/prices/history, the cheapest price per bucket), so it shows the numbers the API answers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from gpusupply.cli import output
from gpusupply.cli.commands import (
    ApiKeyOption,
    JsonOption,
    UrlOption,
    VendorOption,
    connect,
    handled,
    now,
    print_table,
)
from gpusupply.contract.prices import MarketNow, PriceAlertOut, PriceHistory, PriceSeries
from gpusupply.core.prices import parse_duration

PANEL = "Prices"
SPARK_WIDTH = 40  # points per sparkline: the step asked for is the window / this
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
PRICE_COLUMNS = (
    output.Column("VENDOR", keep=9), output.Column("CONTRACT", keep=8), output.Column("NOW $/GPU-H", keep=9, right=True),
    output.Column("24H", keep=5, right=True), output.Column("LOW-HIGH", keep=4), output.Column("HISTORY", keep=6, flex=True),
)
ALERT_COLUMNS = (
    output.Column("ALERT ID", keep=9), output.Column("NAME", keep=4, flex=True), output.Column("WATCHES", keep=8, flex=True),
    output.Column("THRESHOLD", keep=9, right=True), output.Column("THEN", keep=7), output.Column("STATE", keep=8),
    output.Column("LAST PRICE", keep=5, right=True), output.Column("FIRED", keep=3),
)


# ----- pure helpers ----------------------------------------------------------------------------------
def sparkline(values: Sequence[float | None]) -> str:
    """One block per value, scaled between the lowest and the highest; a gap is a space."""
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low
    top = len(SPARK_BLOCKS) - 1
    return "".join(
        " " if v is None else SPARK_BLOCKS[0 if span == 0 else round((v - low) / span * top)] for v in values
    )


def spark_step(since: str) -> str:
    """The step that gives a window about SPARK_WIDTH points (whole minutes, at least one)."""
    window = parse_duration(since)
    if window is None:
        raise typer.BadParameter("--since must be a duration like 6h, 7d or 4w", param_hint="--since")
    return f"{max(1, math.ceil(window / SPARK_WIDTH / 60))}m"


def series_lows(series: PriceSeries) -> list[float]:
    """The series' cheapest price per bucket: what the sparkline draws."""
    return [point.min for point in series.points]


def price_rows(markets: Sequence[MarketNow], history: PriceHistory) -> list[list[str]]:
    """One row per (vendor, contract type): its cheapest market now and its history's sparkline."""
    cheapest: dict[tuple[str, str], MarketNow] = {}
    for market in markets:  # cheapest first
        cheapest.setdefault((market.vendor, market.contract_type), market)
    series = {(s.vendor or "", s.contract_type): s for s in history.series}
    rows = []
    for key in sorted(set(cheapest) | set(series)):
        now_market, line = cheapest.get(key), series.get(key)
        lows = series_lows(line) if line is not None else []
        change = now_market.change_24h if now_market is not None else None
        rows.append([
            key[0], key[1],
            f"{now_market.price:.3f}" if now_market is not None else "-",
            f"{change.change_pct:+.1f}%" if change is not None else "-",
            f"{min(lows):.2f}-{max(lows):.2f}" if lows else "-",
            sparkline(lows),
        ])
    return rows


# ----- prices ----------------------------------------------------------------------------------------
def prices(
    gpu_type: Annotated[str, typer.Argument(metavar="GPU", help="A family (H100) or a model.", show_default=False)],
    count: Annotated[int | None, typer.Option("--count", min=1, help="GPUs per offer (default: any).")] = None,
    region: Annotated[str | None, typer.Option("--region", help="US, EU, APAC or Other.")] = None,
    since: Annotated[str, typer.Option("--since", help="How far back the sparkline goes (6h, 7d, 4w).")] = "24h",
    vendor: VendorOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """The cheapest offer per vendor and contract type now, its change over 24 h, and a sparkline."""
    step = spark_step(since)
    with connect(url, api_key) as gs:
        current = gs.prices_now(gpu_type, gpu_count=count, region=region, vendor=vendor)
        history = gs.price_history(gpu_type, gpu_count=count, region=region, vendor=vendor, since=since, step=step)
    if json_output:
        output.print_json({"now": current.model_dump(mode="json"), "history": history.model_dump(mode="json")})
        return
    rows = price_rows(current.markets, history)
    if not rows:
        output.console(stderr=True).print(f"no {gpu_type} offers now, and no history in the last {since}")
        return
    print_table(PRICE_COLUMNS, rows)
    output.console().print(f"history: the cheapest $/GPU-hour per {history.step} over the last {since}", soft_wrap=True)


# ----- alerts ----------------------------------------------------------------------------------------
def _watches(alert: PriceAlertOut) -> str:
    compute = alert.spec.get("compute", {})
    parts = [f"{compute.get('gpu_count', 1)}x {compute.get('gpu_type')}"]
    parts += [f"{key} {alert.spec[key]}" for key in ("vendor", "region") if alert.spec.get(key)]
    if compute.get("contract_type"):
        parts.append(str(compute["contract_type"]))
    return ", ".join(parts)


def alert_row(alert: PriceAlertOut, at: datetime) -> list[str]:
    then = f"procure ({alert.procured_count}/{(alert.procure or {}).get('max_count', 1)})" if alert.then == "procure" else "notify"
    return [
        str(alert.alert_id), alert.name or "-", _watches(alert), f"{alert.threshold:.3f}", then, alert.state,
        f"{alert.last_price:.3f}" if alert.last_price is not None else "-",
        output.relative(alert.last_fired_at, at) if alert.last_fired_at else "-",
    ]


def add_alert(
    gpu_type: Annotated[str, typer.Argument(metavar="GPU", help="A family (H100) or a model.", show_default=False)],
    below: Annotated[float, typer.Option("--below", help="Threshold: USD per GPU-hour.", show_default=False)],
    count: Annotated[int, typer.Option("--count", min=1, help="GPUs per offer.")] = 1,
    region: Annotated[str | None, typer.Option("--region", help="US, EU, APAC or Other.")] = None,
    contract: Annotated[str | None, typer.Option("--contract", help="ondemand or spot (default: either).")] = None,
    vendor: VendorOption = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for yourself (and the resources it procures).")] = None,
    procure: Annotated[bool, typer.Option("--procure", help="A buy-below order: procure when it fires (needs --ssh-key).")] = False,
    ssh_key: Annotated[Path | None, typer.Option("--ssh-key", help="The public key file the procured resource gets.")] = None,
    max_count: Annotated[int, typer.Option("--max-count", min=1, max=100, help="With --procure: resources it may procure.")] = 1,
    ttl: Annotated[int | None, typer.Option("--ttl", min=1, help="With --procure: delete each resource this many seconds after.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Watch the cheapest matching offer: price.below / price.above webhook events; --procure buys it."""
    spec: dict[str, Any] = {"compute": {"gpu_type": gpu_type, "gpu_count": count}}
    if contract:
        spec["compute"]["contract_type"] = contract
    spec.update({k: v for k, v in (("region", region), ("vendor", vendor)) if v})
    order: dict[str, Any] | None = None
    if procure:
        if ssh_key is None:
            raise typer.BadParameter("--procure needs --ssh-key FILE (the public key the resource gets)", param_hint="--ssh-key")
        try:
            key_text = ssh_key.expanduser().read_text().strip()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {ssh_key}: {exc.strerror}", param_hint="--ssh-key") from None
        order = {"ssh_public_key": key_text, "max_count": max_count, **({"auto_delete": {"ttl_seconds": ttl}} if ttl else {})}
    with connect(url, api_key) as gs:
        created = gs.create_price_alert(spec, below, name=name, procure=order)
    if json_output:
        output.print_json(created)
        return
    kind = "buy-below order" if procure else "price alert"
    output.console().print(f"{kind} {created.alert_id}: {_watches(created)} at or under ${created.threshold:.3f}/GPU-hour", soft_wrap=True)


def list_alerts(url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Your price alerts, their state and last price."""
    with connect(url, api_key) as gs:
        found = gs.list_price_alerts()
    if json_output:
        output.print_json(found)
        return
    if not found.alerts:
        output.console(stderr=True).print("no price alerts; add one with `gpusupply alerts add H100 --below 2`")
        return
    at = now()
    print_table(ALERT_COLUMNS, [alert_row(a, at) for a in found.alerts])


AlertArgument = Annotated[str, typer.Argument(help="The alert id (a UUID).", show_default=False)]


def delete_alert(alert_id: AlertArgument, url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Delete a price alert and its firing history (resources it procured stay)."""
    with connect(url, api_key) as gs:
        deleted = gs.delete_price_alert(alert_id)
    if json_output:
        output.print_json(deleted)
        return
    output.console().print(f"{deleted.alert_id}: deleted", soft_wrap=True)


def firings(alert_id: AlertArgument, url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """An alert's firings, newest first, and what each procured."""
    with connect(url, api_key) as gs:
        found = gs.list_price_alert_firings(alert_id)
    if json_output:
        output.print_json(found)
        return
    if not found.firings:
        output.console(stderr=True).print("it has not fired yet")
        return
    at = now()
    columns = (output.Column("WHEN", keep=5), output.Column("EVENT", keep=9), output.Column("PRICE", keep=6, right=True),
               output.Column("VENDOR", keep=6), output.Column("RESOURCE / NOTE", keep=6, flex=True))
    print_table(columns, [
        [output.relative(f.at, at), f.event_type, f"{f.price:.3f}" if f.price is not None else "-", f.vendor or "-",
         str(f.resource_id) if f.resource_id else (f.note or "-")]
        for f in found.firings
    ])


ALERT_COMMANDS: dict[str, Callable[..., Any]] = {"add": add_alert, "list": list_alerts, "delete": delete_alert, "firings": firings}


def register(app: typer.Typer) -> None:
    app.command("prices", rich_help_panel=PANEL)(handled(prices))
    group = typer.Typer(help="Price alerts and buy-below orders: webhook events when a price crosses your line.", no_args_is_help=True)
    for name, command in ALERT_COMMANDS.items():
        group.command(name)(handled(command))
    app.add_typer(group, name="alerts", rich_help_panel=PANEL)
