"""Client commands: search offers, procure, list/show/delete resources, start/stop/reboot, wait.

They are a client of the HTTP API through the SDK (`gpusupply.client`). Every command takes
`--url`, `--api-key` (or the environment, or the config file: see `cli/config.py`) and `--json`.
Failures print one line on stderr (a JSON object with --json) and exit with a documented code
(`output.ExitCode`, docs/cli.md); never a traceback.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpusupply.cli import output
from gpusupply.cli.config import (
    ClientConfig,
    MissingKey,
    NoMatch,
    UsageProblem,
    config_file,
    private_key_for,
    read_config_file,
    read_ssh_key,
    resolve,
    write_config_file,
)
from gpusupply.cli.output import ExitCode
from gpusupply.client import ApiConnectionError, GpuSupply
from gpusupply.client.base import FINAL, NOT_BECOMING_READY, normalize_url
from gpusupply.client.calls import offers_query
from gpusupply.contract.cost import AutoDeleteIn
from gpusupply.contract.schemas import OffersRequest, ResourceDetail
from gpusupply.core.gpus import families
from gpusupply.core.states import ResourceStatus

F = TypeVar("F", bound=Callable[..., Any])

PANEL = "Offers and resources"
DEFAULT_WAIT_TIMEOUT = 900.0


class Region(StrEnum):
    US = "US"
    EU = "EU"
    APAC = "APAC"
    OTHER = "Other"


class WaitTarget(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


def complete_gpu(incomplete: str) -> list[str]:
    """Shell completion for GPU names: families (H100) and canonical names, from the local table."""
    names = list(families())
    for canonical in families().values():
        names.extend(canonical)
    return [name for name in names if name.lower().startswith(incomplete.lower())]


def vendor_id(name: str | None) -> str | None:
    """A --vendor value as the server spells vendor ids (any case accepted here). The CLI keeps
    no list of vendors: the server answers an unknown one, naming those it has."""
    return name.strip().lower() if name is not None else None


def complete_status(incomplete: str) -> list[str]:
    return [status.value for status in ResourceStatus if status.value.startswith(incomplete.lower())]


# ----- options every command takes ------------------------------------------------------------------
UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="GPUSUPPLY_URL", show_default=False,
                 help="Server URL [default: the config file's url, else http://127.0.0.1:8080]."),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="GPUSUPPLY_API_KEY", show_default=False,
                 help="API key (gsk_...) [default: the config file's api_key]."),
]
VendorOption = Annotated[str | None, typer.Option(
    "--vendor", show_default=False, help="Only this vendor (an id `gpusupply vendors` lists).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of tables.")]
WaitOption = Annotated[bool, typer.Option("--wait", help="Wait (with a progress display) until it is done.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0, help="Seconds to wait at most (with --wait); exit code 5 after.")
]
ResourceArgument = Annotated[str, typer.Argument(
    help="The resource: its id, a unique prefix of it (as `resources` shows), or its name.", show_default=False)]


class OutputFormat(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


WideOption = Annotated[bool, typer.Option("--wide", "-w", help="Every column, whole ids, however wide.")]
OutputOption = Annotated[OutputFormat | None, typer.Option(
    "--output", "-o", case_sensitive=False, help="table (fits the terminal), wide (every column), or json.")]


def shape(wide: bool, output_format: OutputFormat | None, json_output: bool) -> tuple[bool, bool]:
    """(wide, json) from --wide, -o and --json."""
    return wide or output_format is OutputFormat.WIDE, json_output or output_format is OutputFormat.JSON


# ----- plumbing ------------------------------------------------------------------------------------
# Raised for typer to handle, by typer's names: recent typer carries its own copy of click, so
# click's classes (a package the client does not install) are not the ones raised.
TYPER_SIGNALS = (typer.Exit, typer.Abort, typer.BadParameter)


def handled(command: F) -> F:
    """Turn every failure into one line on stderr and its exit code (typer's own exits and usage
    errors keep their usual form and exit code 2)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TYPER_SIGNALS:
            raise
        except (Exception, KeyboardInterrupt) as error:  # the CLI never shows a traceback
            fail(error, json_output=bool(kwargs.get("json_output")))

    # return-value: functools.wraps gives `run` the command's signature (what typer reads), which
    # the type checker cannot see.
    return run  # type: ignore[return-value]


def fail(error: BaseException, *, json_output: bool) -> None:
    code = output.exit_code_for(error) if output.is_known_failure(error) else ExitCode.API_ERROR
    if json_output:
        document = output.error_document(error)
        document["exit_code"] = int(code)
        typer.echo(json.dumps(output.jsonable(document), default=str), err=True)
    else:
        message = output.error_message(error)
        if isinstance(error, ApiConnectionError) and _server_url:
            message += f" at {_server_url[0]} (is `gpusupply serve` running there? set --url or GPUSUPPLY_URL)"
        if not output.is_known_failure(error):
            message = f"unexpected {type(error).__name__}: {message}"
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(int(code))


_server_url: list[str] = []  # the URL of the last connect(), for a connection error's message


def connect(url: str | None, api_key: str | None) -> GpuSupply:
    config: ClientConfig = resolve(url, api_key)
    _server_url[:] = [config.url]
    if config.api_key is None:
        raise MissingKey(
            "no API key: pass --api-key, set GPUSUPPLY_API_KEY, or store one with `gpusupply configure --api-key gsk_...`"
        )
    return GpuSupply(config.url, config.api_key)


def now() -> datetime:
    return datetime.now(UTC)


def print_table(columns: Sequence[output.Column], rows: Sequence[Sequence[str]], *, wide: bool = False) -> None:
    """A table that fits the terminal (COLUMNS), never wrapping a cell; `wide`: every column, whole."""
    typer.echo(output.render_table(columns, rows, width=output.width(), wide=wide))


def resolve_resource(gs: GpuSupply, ref: str) -> str:
    """A resource id from what the user typed: the id, a unique prefix of it, or a unique name
    (a name several resources share is taken when exactly one of them is live)."""
    text = ref.strip()
    try:
        return str(UUID(text))
    except ValueError:
        pass
    if not text:
        raise UsageProblem("give a resource id, a prefix of it, or its name")
    every = list(gs.iter_resources())
    by_id = [r for r in every if str(r.resource_id).startswith(text.lower())]
    by_name = [r for r in every if r.name == text]
    if len(by_id) == 1 and not by_name:
        return str(by_id[0].resource_id)
    if by_name and not by_id:
        live = [r for r in by_name if r.status not in FINAL]
        if len(by_name) == 1 or len(live) == 1:
            return str((by_name if len(by_name) == 1 else live)[0].resource_id)
    found = by_id + [r for r in by_name if r not in by_id]
    if not found:
        raise NoMatch(f"no resource has an id starting with {text!r} or the name {text!r} (see `gpusupply resources --all`)")
    shown = ", ".join(f"{r.resource_id} ({r.name or '-'}, {r.status})" for r in found[:5])
    raise UsageProblem(f"{text!r} matches {len(found)} resources: {shown}; give more of the id")


def follow(gs: GpuSupply, resource_id: str, target: WaitTarget, *, timeout: float, json_output: bool) -> ResourceDetail:
    """Wait for `target`, printing a line per status change; on a terminal also a live display
    (spinner, current status, elapsed time)."""
    statuses, fail_on = _wait_rule(target)
    if json_output:
        return gs.wait_for_status(resource_id, statuses, fail_on=fail_on, timeout=timeout)
    out = output.console()

    def line(resource: ResourceDetail) -> None:
        note = f"  {resource.status_message}" if resource.status_message else ""
        out.print(f"{output.timestamp(now())}  {resource.status}{note}")

    if not out.is_terminal:
        return gs.wait_for_status(resource_id, statuses, fail_on=fail_on, timeout=timeout, on_update=line)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task(f"waiting for {target.value}", total=None)

        def update(resource: ResourceDetail) -> None:
            line(resource)
            shown = f"{resource.status} ({resource.status_message})" if resource.resource_type == "cluster" else resource.status
            progress.update(task, description=f"{shown}, waiting for {target.value}")

        return gs.wait_for_status(resource_id, statuses, fail_on=fail_on, timeout=timeout, on_update=update)


def _wait_rule(target: WaitTarget) -> tuple[frozenset[str], frozenset[str]]:
    """(statuses that end the wait, statuses that fail it) for a target."""
    if target is WaitTarget.DELETED:
        return FINAL, frozenset()
    if target is WaitTarget.RUNNING:
        return frozenset({"running"}), frozenset(NOT_BECOMING_READY)
    return frozenset({"stopped"}), frozenset(NOT_BECOMING_READY)


# ----- offers --------------------------------------------------------------------------------------
def _spec(
    gpu: str, count: int, max_price: float | None, region: Region | None, spot: bool | None, vendor: str | None
) -> OffersRequest:
    return offers_query(
        gpu,
        gpu_count=count,
        max_price_per_gpu_hour=max_price,
        region=region.value if region else None,
        contract_type=None if spot is None else ("spot" if spot else "ondemand"),
        vendor=vendor_id(vendor),
    )


def offers(
    gpu: Annotated[str, typer.Argument(help="GPU family (H100) or canonical name.", autocompletion=complete_gpu,
                                       show_default=False)],
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="GPUs per offer (exact).")] = 1,
    max_price: Annotated[float | None, typer.Option("--max-price", min=0, help="At most this many USD per GPU-hour.")] = None,
    region: Annotated[Region | None, typer.Option("--region", case_sensitive=False, help="Region group.")] = None,
    spot: Annotated[bool | None, typer.Option("--spot/--on-demand", help="Only spot, or only on-demand offers.")] = None,
    vendor: VendorOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Show at most this many.")] = 20,
    wide: WideOption = False,
    output_format: OutputOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Search offers across vendors, cheapest per GPU-hour first."""
    wide, json_output = shape(wide, output_format, json_output)
    with connect(url, api_key) as gs:
        found = gs.get_offers(query=_spec(gpu, count, max_price, region, spot, vendor), limit=limit)
    if json_output:
        output.print_json(found)
        return
    err = output.console(stderr=True)
    if found.partial:
        missing = "; ".join(f"{name}: {why}" for name, why in found.failed_vendors.items())
        err.print(f"warning: some vendors' offers could not be read ({missing})")
    if not found.offers:
        err.print("no offers match")
        return
    at = now()
    out = output.console()
    rows = [output.offer_row(offer, at) for offer in found.offers]
    print_table(output.OFFER_COLUMNS, rows, wide=wide)
    out.print(f"{len(found.offers)} of {found.total_count} offers, cheapest per GPU-hour first")


def auto_delete_limits(after: str | None, spend_limit: float | None) -> AutoDeleteIn | None:
    """The procure/auto-delete options as the API's body (None when neither is given)."""
    if after is None and spend_limit is None:
        return None
    try:
        ttl = output.duration_seconds(after) if after is not None else None
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    return AutoDeleteIn(ttl_seconds=ttl, spend_limit=spend_limit)


# ----- procure -------------------------------------------------------------------------------------
def procure(
    offer_id: Annotated[str | None, typer.Argument(help="The offer to procure (from `gpusupply offers`).",
                                                   show_default=False)] = None,
    ssh_key: Annotated[str | None, typer.Option(
        "--ssh-key", help="Public key file, or the key itself [default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub].",
        show_default=False)] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="Instead of an offer: the cheapest offer of this GPU.",
                                            autocompletion=complete_gpu)] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="With --gpu: GPUs per offer.")] = 1,
    max_price: Annotated[float | None, typer.Option("--max-price", min=0, help="With --gpu: USD per GPU-hour, at most.")] = None,
    region: Annotated[Region | None, typer.Option("--region", case_sensitive=False, help="With --gpu.")] = None,
    spot: Annotated[bool | None, typer.Option("--spot/--on-demand", help="With --gpu.")] = None,
    vendor: Annotated[str | None, typer.Option("--vendor", show_default=False, help="With --gpu: only this vendor.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for the resource.")] = None,
    cluster_name: Annotated[str | None, typer.Option("--cluster-name", help="A cluster offer: the cluster's name.")] = None,
    cloud_init: Annotated[Path | None, typer.Option("--cloud-init", exists=True, dir_okay=False, readable=True,
                                                    help="A #cloud-config or #!/ script file.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        "--idempotency-key", help="Repeat the command with the same key: it procures once.")] = None,
    auto_delete_after: Annotated[str | None, typer.Option(
        "--auto-delete-after", help="Delete it this long after procurement: 3600, 90m, 2h, 1d.")] = None,
    spend_limit: Annotated[float | None, typer.Option(
        "--spend-limit", min=0, help="Delete it once its cost so far reaches this (USD).")] = None,
    wait_for_capacity: Annotated[bool, typer.Option(
        "--wait-for-capacity", help="With --gpu: accept it even when nothing matches now; the engine waits for capacity.")] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Procure an offer (or, with --gpu, the cheapest matching one) and print the SSH command once ready."""
    spec_flags = gpu is not None or max_price is not None or region is not None or spot is not None or vendor is not None
    if offer_id is not None and spec_flags:
        raise UsageProblem("give an OFFER_ID or --gpu (with its filters), not both")
    if offer_id is None and gpu is None:
        raise UsageProblem("give an OFFER_ID (see `gpusupply offers`) or --gpu to procure the cheapest match")
    if wait_for_capacity and gpu is None:
        raise UsageProblem("--wait-for-capacity goes with --gpu (an OFFER_ID is there or not)")
    key, key_file = read_ssh_key(ssh_key)
    script = cloud_init.read_text(encoding="utf-8") if cloud_init is not None else None
    spec = _spec(gpu, count, max_price, region, spot, vendor) if gpu is not None else None
    limits = auto_delete_limits(auto_delete_after, spend_limit)
    with connect(url, api_key) as gs:
        if not json_output:
            _announce(gs, offer_id, spec)
        answer = gs.procure(
            offer_id, spec=spec, ssh_public_key=key, cloud_init=script, resource_name=name,
            idempotency_key=idempotency_key, auto_delete=limits, wait_for_capacity=wait_for_capacity, cluster_name=cluster_name,
        )
        resource_id = str(answer.resource_ids[0])
        if not wait:
            if json_output:
                output.print_json(answer)
                return
            out = output.console()
            out.print(f"procured: resource {resource_id} ({answer.status})")
            out.print(f"follow it with `gpusupply show {resource_id}` or `gpusupply wait {resource_id}`")
            return
        if not json_output:
            output.console().print(f"procured: resource {resource_id}; waiting until it is running")
        resource = follow(gs, resource_id, WaitTarget.RUNNING, timeout=timeout, json_output=json_output)
        nodes = [gs.get_resource(link.resource_id) for link in resource.linked_resources if link.link_type == "member"]
    if json_output:
        output.print_json({"procurement": answer, "resource": resource, **({"nodes": nodes} if nodes else {})})
        return
    out = output.console()
    if resource.resource_type == "cluster":
        output.print_cluster(resource, nodes, private_key_for(key_file))
        return
    command = output.ssh_command(resource.access.ssh_command, private_key_for(key_file))
    out.print(f"ready: {resource.gpu_count}x {resource.gpu_type} on {resource.vendor} ({output.money(resource.pricing_total_hourly)}/h)")
    out.print(command or "(the vendor gave no SSH address)")


def _announce(gs: GpuSupply, offer_id: str | None, spec: OffersRequest | None) -> None:
    """Say which offer, at which price, the procurement is about to take."""
    err = output.console()
    if offer_id is not None:
        offer = gs.get_offer(offer_id)
        err.print(f"taking offer {output.offer_summary(offer)}", soft_wrap=True)
        return
    found = gs.get_offers(query=spec, limit=1)
    if found.offers:
        err.print(f"taking the cheapest match now: {output.offer_summary(found.offers[0])} "
                  "(if it is gone by then, the next cheapest)", soft_wrap=True)


# ----- resources -----------------------------------------------------------------------------------
def resources(
    status: Annotated[str | None, typer.Option("--status", help="Only this status.", autocompletion=complete_status)] = None,
    vendor: VendorOption = None,
    offer: Annotated[str | None, typer.Option("--offer", help="Only the resources of this offer.")] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also ended ones (deleted, failed, terminated).")] = False,
    wide: WideOption = False,
    output_format: OutputOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Your resources, newest first (live ones unless --all or --status)."""
    wide, json_output = shape(wide, output_format, json_output)
    with connect(url, api_key) as gs:
        found = [
            r
            for r in gs.iter_resources(status=status, vendor=vendor_id(vendor), offer_id=offer)
            if all_ or status is not None or r.status not in FINAL
        ]
    if json_output:
        output.print_json({"resources": found})
        return
    if not found:
        output.console(stderr=True).print("no resources" + ("" if all_ or status else " (--all shows ended ones)"))
        return
    at = now()
    print_table(output.RESOURCE_COLUMNS, [output.resource_row(r, at, wide) for r in found], wide=wide)


def show(
    resource_id: ResourceArgument,
    refresh: Annotated[bool, typer.Option("--refresh", help="Re-read the vendor first.")] = False,
    wide: WideOption = False,
    output_format: OutputOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """One resource and its history."""
    wide, json_output = shape(wide, output_format, json_output)
    with connect(url, api_key) as gs:
        resource_id = resolve_resource(gs, resource_id)
        resource = gs.get_resource(resource_id, force_refresh=refresh)
        events = list(gs.iter_events(resource_id))
    if json_output:
        output.print_json({"resource": resource, "events": events})
        return
    out = output.console()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, value in output.resource_facts(resource, now()):
        facts.add_row(label, value)
    out.print(facts)
    out.print()
    print_table(output.EVENT_COLUMNS, [output.event_row(e) for e in events], wide=wide)


def delete(
    resource_id: ResourceArgument,
    force: Annotated[bool, typer.Option("--force", help="Delete even while a start/stop/reboot is in flight.")] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete a resource: the engine deletes it on the vendor and confirms it is gone."""
    with connect(url, api_key) as gs:
        resource_id = resolve_resource(gs, resource_id)
        answer = gs.delete_resource(resource_id, force=force)
        if not wait:
            if json_output:
                output.print_json(answer)
            else:
                output.console().print(f"{answer.resource_id}: {answer.status}. {answer.message}")
            return
        if not json_output:
            output.console().print(f"{answer.resource_id}: {answer.status}; waiting for the vendor to confirm")
        resource = follow(gs, resource_id, WaitTarget.DELETED, timeout=timeout, json_output=json_output)
    if json_output:
        output.print_json(resource)
    else:
        output.console().print(f"{resource.resource_id}: {resource.status}")


def _act(action: str, target: WaitTarget, resource_id: str, wait: bool, timeout: float,
         url: str | None, api_key: str | None, json_output: bool) -> None:
    with connect(url, api_key) as gs:
        resource_id = resolve_resource(gs, resource_id)
        answer = getattr(gs, f"{action}_resource")(resource_id)
        if not wait:
            if json_output:
                output.print_json(answer)
            else:
                output.console().print(f"{answer.resource_id}: {answer.status} ({action} requested)")
            return
        if not json_output:
            output.console().print(f"{answer.resource_id}: {answer.status}; waiting until it is {target.value}")
        resource = follow(gs, resource_id, target, timeout=timeout, json_output=json_output)
    if json_output:
        output.print_json(resource)
    else:
        output.console().print(f"{resource.resource_id}: {resource.status}")


def stop(resource_id: ResourceArgument, wait: WaitOption = False, timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
         url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Stop a running resource (on vendors that can: `gpusupply vendors` shows which)."""
    _act("stop", WaitTarget.STOPPED, resource_id, wait, timeout, url, api_key, json_output)


def start(resource_id: ResourceArgument, wait: WaitOption = False, timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
          url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Start a stopped resource."""
    _act("start", WaitTarget.RUNNING, resource_id, wait, timeout, url, api_key, json_output)


def reboot(resource_id: ResourceArgument, wait: WaitOption = False, timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
           url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Reboot a running resource."""
    _act("reboot", WaitTarget.RUNNING, resource_id, wait, timeout, url, api_key, json_output)


def wait(
    resource_id: ResourceArgument,
    until: Annotated[WaitTarget, typer.Option("--for", case_sensitive=False, help="The status to wait for.")] = WaitTarget.RUNNING,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Wait until a resource is running (or stopped, or deleted); exit 5 on timeout, 6 if it fails."""
    with connect(url, api_key) as gs:
        resource = follow(gs, resolve_resource(gs, resource_id), until, timeout=timeout, json_output=json_output)
    if json_output:
        output.print_json(resource)
        return
    out = output.console()
    out.print(f"{resource.resource_id}: {resource.status}")
    if resource.status == "running" and resource.access.ssh_command:
        out.print(resource.access.ssh_command)


# ----- discovery and configuration -----------------------------------------------------------------
def vendors(url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Enabled vendors: mode, health, what they can do, catalog size."""
    with connect(url, api_key) as gs:
        found = gs.available_vendors()
    if json_output:
        output.print_json(found)
        return
    rows = []
    for v in found:
        can = [name for name, yes in v.capabilities.model_dump().items() if yes and name in ("stop_start", "reboot", "spot")]
        health = f"degraded: {v.degraded_reason or 'yes'}" if v.degraded else "ok"
        rows.append([v.id, v.mode, health, ", ".join(can) or "-", str(v.catalog.offers)])
    columns = (output.Column("VENDOR", keep=9), output.Column("MODE", keep=8), output.Column("HEALTH", keep=7, flex=True),
               output.Column("CAN", keep=5, flex=True), output.Column("OFFERS", keep=6, right=True))
    print_table(columns, rows)


def configure(
    url: Annotated[str | None, typer.Option("--url", help="Server URL to store.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="API key to store.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Store the server URL and API key in the config file (owner-only), or show what is stored."""
    path = config_file()
    stored = read_config_file(path)
    if url is not None:
        stored["url"] = normalize_url(url)
    if api_key is not None:
        stored["api_key"] = api_key.strip()
    if url is not None or api_key is not None:
        write_config_file(path, stored)
    shown = {"config_file": str(path), "url": stored.get("url"), "api_key": _masked(stored.get("api_key"))}
    if json_output:
        output.print_json(shown)
        return
    out = output.console()
    for key, value in shown.items():
        out.print(f"{key}: {value or '-'}", soft_wrap=True)  # a path stays one line, whatever the width


def _masked(key: str | None) -> str | None:
    return f"{key[:12]}..." if key else None


COMMANDS: dict[str, Callable[..., None]] = {
    "offers": offers,
    "procure": procure,
    "resources": resources,
    "show": show,
    "delete": delete,
    "stop": stop,
    "start": start,
    "reboot": reboot,
    "wait": wait,
    "vendors": vendors,
    "configure": configure,
}


def register(app: typer.Typer) -> None:
    for name, command in COMMANDS.items():
        app.command(name, rich_help_panel=PANEL)(handled(command))
