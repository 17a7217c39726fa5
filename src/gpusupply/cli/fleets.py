"""`gpusupply fleets ...`: keep N GPUs running (docs/fleets.md). Create, list, show (`--watch`
re-draws it until the fleet is deleted or Ctrl-C), scale and delete.

A client of the SDK like `cli/commands.py`, sharing its options, error handling and output. A
fleet is named by its id, a unique prefix of it, or its name."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from gpusupply.cli import output
from gpusupply.cli.commands import (
    ApiKeyOption,
    JsonOption,
    Region,
    UrlOption,
    UsageProblem,
    _spec,
    complete_gpu,
    connect,
    handled,
    now,
    print_table,
)
from gpusupply.cli.config import read_ssh_key
from gpusupply.client import GpuSupply
from gpusupply.contract.fleets import FleetDetail, FleetSummary

PANEL = "Fleets"
FLEET_COLUMNS = (
    output.Column("FLEET ID", keep=9), output.Column("NAME", keep=8, flex=True), output.Column("STATUS", keep=9),
    output.Column("RUNNING/WANTED", keep=9, right=True), output.Column("$/H", keep=6, right=True),
    output.Column("GPU", keep=5), output.Column("MESSAGE", keep=3, flex=True), output.Column("CREATED", keep=2),
)
MEMBER_COLUMNS = (
    output.Column("RESOURCE ID", keep=9), output.Column("NAME", keep=4, flex=True), output.Column("STATUS", keep=9),
    output.Column("VENDOR", keep=8), output.Column("REGION", keep=5, flex=True), output.Column("$/H", keep=6, right=True),
    output.Column("SSH", keep=7, flex=True), output.Column("SINCE", keep=3),
)
EVENT_COLUMNS = (output.Column("WHEN", keep=9), output.Column("EVENT", keep=8), output.Column("WHAT", keep=7, flex=True))
WATCH_SECONDS = 2.0

FleetArgument = Annotated[str, typer.Argument(metavar="FLEET", help="The fleet's id, a unique prefix of it, or its name.",
                                              show_default=False)]


class OnPreemption(StrEnum):
    REPLACE = "replace"
    SHRINK = "shrink"


class Placement(StrEnum):
    SPREAD = "spread"
    PACK = "pack"


def resolve_fleet(gs: GpuSupply, ref: str) -> str:
    text = ref.strip()
    try:
        return str(UUID(text))
    except ValueError:
        pass
    fleets = gs.list_fleets(limit=1000).fleets
    matches = [f for f in fleets if f.name == text] or [f for f in fleets if str(f.fleet_id).startswith(text.lower())]
    if len(matches) == 1:
        return str(matches[0].fleet_id)
    if not matches:
        raise UsageProblem(f"no fleet {text!r}: give its id or name (see `gpusupply fleets list`)")
    raise UsageProblem(f"{text!r} names {len(matches)} fleets; give the id")


def gpu_of(fleet: FleetSummary) -> str:
    compute = fleet.spec.get("compute") or {}
    kind = " spot" if compute.get("contract_type") == "spot" else ""
    return f"{compute.get('gpu_count') or 1}x {compute.get('gpu_type')}{kind}"


def fleet_row(fleet: FleetSummary, at: datetime) -> list[str]:
    return [
        str(fleet.fleet_id), fleet.name, fleet.status, f"{fleet.running}/{fleet.size}", output.money(fleet.spend_per_hour),
        gpu_of(fleet), fleet.status_message or "-", output.relative(fleet.created_at, at),
    ]


def render(fleet: FleetDetail, at: datetime) -> None:
    out = output.console()
    cap = f", cap {output.money(fleet.max_hourly_spend)}/h" if fleet.max_hourly_spend is not None else ""
    out.print(f"fleet {fleet.name} ({fleet.fleet_id}): {fleet.status}", soft_wrap=True)
    out.print(f"  {fleet.running} running of {fleet.size} wanted ({fleet.counting} counting), {output.money(fleet.spend_per_hour)}/h{cap}")
    out.print(f"  {gpu_of(fleet)}; on preemption: {fleet.on_preemption}; placement: {fleet.placement}")
    if fleet.status_message:
        out.print(f"  {fleet.status_message}", soft_wrap=True)
    for cooldown in fleet.cooldowns:
        out.print(f"  avoiding {cooldown.vendor} {cooldown.vendor_region} until {cooldown.until.isoformat(timespec='seconds')}", soft_wrap=True)
    if fleet.members:
        print_table(MEMBER_COLUMNS, [
            [str(m.resource_id), m.name or "-", m.status, m.vendor or "-", m.vendor_region or "-", output.money(m.pricing_total_hourly),
             m.access.ssh_command or "-", output.relative(m.running_since or m.created_at, at)]
            for m in fleet.members
        ])
    if fleet.events:
        print_table(EVENT_COLUMNS, [[output.relative(e.at, at), e.kind, e.reason or "-"] for e in fleet.events[-10:]])


def create(
    name: Annotated[str, typer.Argument(help="A name, unique among your fleets.", show_default=False)],
    gpu: Annotated[str, typer.Option("--gpu", help="GPU family (H100) or canonical name of each member.", autocompletion=complete_gpu,
                                     show_default=False)],
    size: Annotated[int, typer.Option("--size", min=0, max=1000, help="Members wanted.")] = 1,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="GPUs per member.")] = 1,
    max_price: Annotated[float | None, typer.Option("--max-price", min=0, help="USD per GPU-hour, at most.")] = None,
    region: Annotated[Region | None, typer.Option("--region", case_sensitive=False)] = None,
    spot: Annotated[bool | None, typer.Option("--spot/--on-demand", help="The contract type (default: either).")] = None,
    vendor: Annotated[str | None, typer.Option("--vendor", show_default=False, help="Only this vendor.")] = None,
    on_preemption: Annotated[OnPreemption, typer.Option("--on-preemption", case_sensitive=False,
                                                        help="replace a lost member, or shrink the fleet.")] = OnPreemption.REPLACE,
    placement: Annotated[Placement, typer.Option("--placement", case_sensitive=False,
                                                 help="spread over vendor-regions, or pack into few.")] = Placement.SPREAD,
    max_hourly_spend: Annotated[float | None, typer.Option("--max-hourly-spend", min=0,
                                                           help="USD/h for all members together.")] = None,
    ssh_key: Annotated[str | None, typer.Option(
        "--ssh-key", help="Public key file, or the key itself [default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub].",
        show_default=False)] = None,
    cloud_init: Annotated[Path | None, typer.Option("--cloud-init", exists=True, dir_okay=False, readable=True,
                                                    help="A #cloud-config or #!/ script file, run on every member.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a fleet: keep SIZE members of the spec running, replacing those a vendor takes back."""
    key, _ = read_ssh_key(ssh_key)
    script = cloud_init.read_text(encoding="utf-8") if cloud_init is not None else None
    spec = _spec(gpu, count, max_price, region, spot, vendor)
    with connect(url, api_key) as gs:
        fleet = gs.create_fleet(name, spec, size, ssh_public_key=key, cloud_init=script, on_preemption=on_preemption.value,
                                placement=placement.value, max_hourly_spend=max_hourly_spend)
    if json_output:
        output.print_json(fleet)
        return
    out = output.console()
    out.print(f"fleet {fleet.name}: {fleet.fleet_id} ({fleet.status}, {fleet.size} wanted)", soft_wrap=True)
    out.print(f"follow it with `gpusupply fleets show {fleet.name} --watch`", soft_wrap=True)


def list_fleets(
    all_fleets: Annotated[bool, typer.Option("--all", help="Also deleted fleets.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Your fleets, newest first: running of wanted, spend per hour, status."""
    with connect(url, api_key) as gs:
        found = gs.list_fleets(include_deleted=all_fleets, limit=1000)
    if json_output:
        output.print_json(found)
        return
    if not found.fleets:
        output.console(stderr=True).print("no fleets; create one with `gpusupply fleets create NAME --gpu H100 --size 3`")
        return
    at = now()
    print_table(FLEET_COLUMNS, [fleet_row(f, at) for f in found.fleets])


def show(
    fleet: FleetArgument,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Draw it again every few seconds, until it is deleted (or Ctrl-C).")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="With --watch: seconds between draws.")] = WATCH_SECONDS,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """A fleet: its members with status and SSH, running of wanted, spend, cool-downs and latest events."""
    with connect(url, api_key) as gs:
        fleet_id = resolve_fleet(gs, fleet)
        while True:
            found = gs.get_fleet(fleet_id)
            if json_output:
                output.print_json(found)
            else:
                render(found, now())
            if not watch or found.status == "deleted":
                return
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return
            if not json_output:
                output.console().print("")


def scale(
    fleet: FleetArgument,
    size: Annotated[int, typer.Argument(min=0, max=1000, help="Members wanted.", show_default=False)],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change how many members the fleet keeps (fewer: the extras are deleted, those not running first)."""
    with connect(url, api_key) as gs:
        found = gs.scale_fleet(resolve_fleet(gs, fleet), size)
    if json_output:
        output.print_json(found)
        return
    output.console().print(f"fleet {found.name}: {found.size} wanted ({found.running} running now)", soft_wrap=True)


def delete(fleet: FleetArgument, url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Delete a fleet and every member; it is deleted once every vendor confirmed."""
    with connect(url, api_key) as gs:
        found = gs.delete_fleet(resolve_fleet(gs, fleet))
    if json_output:
        output.print_json(found)
        return
    output.console().print(f"fleet {found.name}: {found.status}; follow it with `gpusupply fleets show {found.name} --watch`", soft_wrap=True)


COMMANDS: dict[str, Callable[..., Any]] = {"create": create, "list": list_fleets, "show": show, "scale": scale, "delete": delete}


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Fleets: keep N GPUs running, replaced when a vendor takes one back.", no_args_is_help=True)
    for name, command in COMMANDS.items():
        group.command(name)(handled(command))
    app.add_typer(group, name="fleets", rich_help_panel=PANEL)
