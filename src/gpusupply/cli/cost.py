"""Cost commands: usage reports, the tenant budget, and a resource's auto-delete limits.

Clients of the SDK like `cli/commands.py`, sharing its options, error handling and output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from gpusupply.cli import output
from gpusupply.cli.commands import (
    ApiKeyOption,
    JsonOption,
    ResourceArgument,
    UrlOption,
    auto_delete_limits,
    connect,
    handled,
    now,
    print_table,
    resolve_resource,
)
from gpusupply.cli.config import UsageProblem

PANEL = "Cost and guardrails"
GROUPS = ("tenant", "vendor", "gpu_family", "day")


def _groups(group_by: str) -> list[str]:
    chosen = [part.strip() for part in group_by.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in GROUPS]
    if unknown or not chosen:
        raise UsageProblem(f"--group-by takes a comma-separated list of {', '.join(GROUPS)}; got {group_by!r}")
    return chosen


def usage(
    start: Annotated[str | None, typer.Option("--from", help="First day or instant (default: the 1st of this month, UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, exclusive (default: now).")] = None,
    group_by: Annotated[str, typer.Option("--group-by", help=f"Comma-separated: {', '.join(GROUPS)}.")] = "vendor",
    tenant: Annotated[str | None, typer.Option("--tenant", help="Another tenant's report (admin keys).")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Print the report as CSV.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Cost and hours over a period, grouped by vendor, GPU family, day or tenant."""
    groups = _groups(group_by)
    with connect(url, api_key) as gs:
        if csv:
            typer.echo(gs.usage_csv(start=start, end=end, group_by=groups, tenant=tenant), nl=False)
            return
        report = gs.usage(start=start, end=end, group_by=groups, tenant=tenant)
    if json_output:
        output.print_json(report)
        return
    columns, rows = output.usage_rows(report)
    out = output.console()
    print_table(columns, rows)
    out.print(f"total {output.money(report.total_cost)} from {output.timestamp(report.from_)} to {output.timestamp(report.to)}")


def budget(
    max_hourly_spend: Annotated[float | None, typer.Option("--max-hourly-spend", min=0, help="USD/h cap on live resources.")] = None,
    monthly_budget: Annotated[float | None, typer.Option("--monthly-budget", min=0, help="USD per calendar month (UTC).")] = None,
    delete_on_exhaustion: Annotated[bool | None, typer.Option(
        "--delete-on-exhaustion/--keep-on-exhaustion", show_default=False,
        help="At 100% of the monthly budget, delete running resources [default: as it is].")] = None,
    no_max_hourly_spend: Annotated[bool, typer.Option("--no-max-hourly-spend", help="Remove the hourly cap only.")] = False,
    no_monthly_budget: Annotated[bool, typer.Option("--no-monthly-budget", help="Remove the monthly budget only.")] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every limit.")] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Another tenant's budget (admin keys).")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the budget, or change the limits given: a limit left out stays as it is."""
    changes = {
        "max_hourly_spend": None if no_max_hourly_spend else max_hourly_spend,
        "monthly_budget": None if no_monthly_budget else monthly_budget,
    }
    given = {name for name, value in changes.items() if value is not None}
    given |= {name for name, removed in (("max_hourly_spend", no_max_hourly_spend), ("monthly_budget", no_monthly_budget)) if removed}
    if no_max_hourly_spend and max_hourly_spend is not None or no_monthly_budget and monthly_budget is not None:
        raise UsageProblem("give a limit or remove it (--no-...), not both")
    if clear and (given or delete_on_exhaustion is not None):
        raise UsageProblem("give limits or --clear, not both")
    with connect(url, api_key) as gs:
        if clear:
            current = gs.set_budget(max_hourly_spend=None, monthly_budget=None, delete_on_exhaustion=False, tenant=tenant)
        elif given or delete_on_exhaustion is not None:
            # The API replaces the whole budget: start from what is set, so one limit never clears another.
            before = gs.get_budget(tenant=tenant)
            limits = {"max_hourly_spend": before.max_hourly_spend, "monthly_budget": before.monthly_budget}
            limits.update({name: changes[name] for name in given})
            keep_deleting = before.delete_on_exhaustion if delete_on_exhaustion is None else delete_on_exhaustion
            current = gs.set_budget(**limits, delete_on_exhaustion=keep_deleting and limits["monthly_budget"] is not None,
                                    tenant=tenant)
        else:
            current = gs.get_budget(tenant=tenant)
    if json_output:
        output.print_json(current)
        return
    out = output.console()
    for label, value in output.budget_facts(current):
        out.print(f"{label}: {value}", soft_wrap=True)


def auto_delete(
    resource_id: ResourceArgument,
    after: Annotated[str | None, typer.Option("--after", help="Delete this long from now: 3600, 90m, 2h, 1d.")] = None,
    spend_limit: Annotated[float | None, typer.Option("--spend-limit", min=0, help="Delete once the cost so far reaches this (USD).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every auto-delete limit.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Set (or --clear) a resource's auto-delete limits: by time, by spend, or both."""
    limits = auto_delete_limits(after, spend_limit)
    if clear == (limits is not None):
        raise UsageProblem("give --after and/or --spend-limit, or --clear")
    with connect(url, api_key) as gs:
        resource = gs.set_auto_delete(resolve_resource(gs, resource_id), limits)
    if json_output:
        output.print_json(resource)
        return
    out = output.console()
    shown = dict(output.resource_facts(resource, now()))
    out.print(f"auto-delete: {shown.get('auto-delete', 'none')}", soft_wrap=True)


COMMANDS: dict[str, Callable[..., Any]] = {"usage": usage, "budget": budget, "auto-delete": auto_delete}


def register(app: typer.Typer) -> None:
    for name, command in COMMANDS.items():
        app.command(name, rich_help_panel=PANEL)(handled(command))
