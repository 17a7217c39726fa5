"""How the client commands show things: table rows, prices, times, exit codes (pure functions),
and the consoles they print to."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import pydantic
from rich.console import Console

from gpusupply.cli.config import MissingKey, NoMatch, UsageProblem
from gpusupply.client import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    GpuSupplyError,
    NotFoundError,
    PermissionDeniedError,
    ResourceFailedError,
    WaitTimeoutError,
)
from gpusupply.contract.cost import BudgetOut, UsageReportOut
from gpusupply.contract.schemas import EventOut, OfferOut, ResourceDetail, ResourceSummary

WIDE = 200  # columns when the output is not a terminal: rows stay on one line for grep and less


class ExitCode(IntEnum):
    """Documented in docs/cli.md."""

    OK = 0
    API_ERROR = 1  # the server refused or failed (409, 410, 422, 5xx, ...)
    USAGE = 2  # bad flags or arguments, unreadable config or key file
    AUTH = 3  # no API key, or the server refused it (401/403)
    NOT_FOUND = 4  # no such resource or offer (404)
    TIMEOUT = 5  # gave up waiting (--wait, `wait`)
    FAILED = 6  # while waiting, the resource failed or ended
    UNREACHABLE = 7  # no answer from the server
    INTERRUPTED = 130  # Ctrl-C (nothing is cancelled on the server)


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, AuthenticationError | PermissionDeniedError | MissingKey):
        return ExitCode.AUTH
    if isinstance(error, NotFoundError | NoMatch):
        return ExitCode.NOT_FOUND
    if isinstance(error, WaitTimeoutError):
        return ExitCode.TIMEOUT
    if isinstance(error, ResourceFailedError):
        return ExitCode.FAILED
    if isinstance(error, ApiConnectionError):
        return ExitCode.UNREACHABLE
    if isinstance(error, UsageProblem | ValueError):  # pydantic's ValidationError is a ValueError
        return ExitCode.USAGE
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.API_ERROR


# The API's words for what the CLI calls a flag: an error about a field names the flag to change.
CLI_WORDS = (
    ("give compute.max_price_per_gpu_hour in the spec", "give --max-price"),
    ("compute.max_price_per_gpu_hour", "--max-price"),
    ("set wait_for_capacity: true", "pass --wait-for-capacity"),
    ("compute.gpu_count", "--count"),
    ("compute.contract_type", "--spot/--on-demand"),
    ("without vendor ", "without --vendor "),
    ("without region ", "without --region "),
)


def cli_words(message: str) -> str:
    for api, flag in CLI_WORDS:
        message = message.replace(api, flag)
    return message


def error_message(error: BaseException) -> str:
    """One line saying what went wrong (never a traceback)."""
    if isinstance(error, pydantic.ValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in error.errors()]
        return "invalid input: " + "; ".join(problems)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (nothing was cancelled on the server)"
    if isinstance(error, ApiError):
        return f"{cli_words(error.message)} (HTTP {error.status})"
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def error_document(error: BaseException) -> dict[str, Any]:
    """The error as one JSON object, for --json."""
    document: dict[str, Any] = {"error": error_message(error), "exit_code": int(exit_code_for(error))}
    if isinstance(error, ApiError):
        document.update(status=error.status, detail=error.detail, request_id=error.request_id)
    if isinstance(error, WaitTimeoutError | ResourceFailedError) and error.resource is not None:
        document["resource"] = error.resource.model_dump(mode="json")
    return document


def is_known_failure(error: BaseException) -> bool:
    return isinstance(error, GpuSupplyError | UsageProblem | ValueError | KeyboardInterrupt)


# ----- values ------------------------------------------------------------------------------------
def money(value: float | None) -> str:
    """USD: two decimals, three below one dollar (GPU-hour prices are often cents)."""
    if value is None:
        return "-"
    return f"${value:,.3f}" if abs(value) < 1 else f"${value:,.2f}"


def relative(when: datetime | None, now: datetime) -> str:
    """`in 29m`, `3m ago`, `2h 5m ago`, `just now`."""
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    span = abs(seconds)
    if span < 45:
        return "just now" if seconds <= 0 else "in <1m"
    minutes = round(span / 60)
    if minutes < 60:
        text = f"{minutes}m"
    elif minutes < 48 * 60:
        text = f"{minutes // 60}h {minutes % 60}m" if minutes % 60 else f"{minutes // 60}h"
    else:
        text = f"{minutes // 1440}d"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def timestamp(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if when is not None else "-"


def region_text(region: str | None, detail: str | None) -> str:
    if region is None:
        return "-"
    return f"{region} ({detail})" if detail else region


def ssh_command(command: str | None, identity: Path | None = None) -> str | None:
    """The server's SSH command, with `-i KEY` when we know which private key goes with it."""
    if not command:
        return None
    if identity is None or " -i " in command:
        return command
    program, _, rest = command.partition(" ")
    home = str(Path.home())
    shown = str(identity)
    shown = "~" + shown[len(home):] if shown.startswith(home + os.sep) else shlex.quote(shown)
    return f"{program} -i {shown} {rest}".strip()


# ----- tables ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Column:
    """A table column. `keep`: lower is dropped first when the table is wider than the terminal;
    `flex`: may be cut short (with ...) instead; `right`: numbers, aligned right."""

    name: str
    keep: int = 5
    flex: bool = False
    right: bool = False
    wide_only: bool = False  # shown only with --wide


GAP = "  "
MIN_FLEX = 8


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], *, width: int, wide: bool = False) -> str:
    """Rows as aligned text that never wraps: lines fit `width` (unless `wide`). Columns with the
    lowest `keep` go first, then flexible columns are cut short. Pure."""
    chosen = [i for i, column in enumerate(columns) if wide or not column.wide_only]
    sizes = {i: max([len(columns[i].name), *(len(row[i]) for row in rows)]) for i in chosen}

    def total(*, cut: bool = False) -> int:
        """The table's width; with `cut`, flexible columns count at their shortest."""
        shortest = {i: min(sizes[i], max(MIN_FLEX, len(columns[i].name))) if cut and columns[i].flex else sizes[i] for i in chosen}
        return sum(shortest.values()) + len(GAP) * (len(chosen) - 1)

    if not wide:
        for i in sorted(chosen, key=lambda i: (columns[i].keep, -i)):
            if total(cut=True) <= width:
                break
            if columns[i].keep < 9:  # 9: never dropped (ids, names)
                chosen.remove(i)
        flexible = [i for i in chosen if columns[i].flex]
        while total() > width and flexible:
            widest = max(flexible, key=lambda i: sizes[i])
            over = total() - width
            sizes[widest] = max(MIN_FLEX, len(columns[widest].name), sizes[widest] - over)
            flexible.remove(widest)

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i in chosen:
            text = cells[i]
            if len(text) > sizes[i]:
                text = text[: max(sizes[i] - 3, 1)] + "..."
            parts.append(text.rjust(sizes[i]) if columns[i].right else text.ljust(sizes[i]))
        return GAP.join(parts).rstrip()

    return "\n".join([line([c.name for c in columns]), *(line(row) for row in rows)])


def short_id(value: Any, wide: bool = False) -> str:
    """Ids as `docker ps` shows them: the first 8 characters (every command takes a unique prefix)."""
    text = str(value)
    return text if wide else text[:8]


# ----- rows --------------------------------------------------------------------------------------
OFFER_COLUMNS = (
    Column("GPU", keep=9), Column("VENDOR", keep=8), Column("REGION", keep=6, flex=True),
    Column("$/GPU-H", keep=9, right=True), Column("$/H", keep=5, right=True), Column("SPOT", keep=3),
    Column("OFFER ID", keep=9), Column("EXPIRES", keep=2), Column("MODEL", wide_only=True),
)
RESOURCE_COLUMNS = (
    Column("ID", keep=9), Column("NAME", keep=9, flex=True), Column("STATUS", keep=9), Column("GPU", keep=8),
    Column("VENDOR", keep=7), Column("REGION", keep=2), Column("$/H", keep=6, right=True),
    Column("COST", keep=6, right=True), Column("CREATED", keep=3), Column("SSH", keep=1),
)
EVENT_COLUMNS = (Column("TIME", keep=9), Column("EVENT", keep=8), Column("STATUS", keep=8), Column("REASON", keep=9, flex=True))


def offer_row(offer: OfferOut, now: datetime) -> list[str]:
    return [
        gpu_text(offer.gpu_family, offer.gpu_count),
        offer.vendor,
        region_text(offer.region, offer.country),
        money(offer.gpu_price_per_hour),
        money(offer.total_price_per_hour),
        "yes" if offer.contract_type == "spot" else "no",
        str(offer.offer_id),  # whole: `procure` needs the whole offer id
        relative(offer.expires_at, now),
        offer.gpu_type,
    ]


def offer_summary(offer: Any) -> str:
    """One line: what an offer is and what it costs (an OfferOut or OfferDetails)."""
    place = region_text(offer.region, getattr(offer, "country", None))
    return (f"{offer.gpu_count}x {offer.gpu_family} ({offer.gpu_type}) on {offer.vendor}, {place}, "
            f"{money(offer.gpu_price_per_hour)}/GPU-hour, {money(offer.total_price_per_hour)}/h")


def gpu_text(gpu_type: str | None, count: int | None) -> str:
    if gpu_type is None:
        return "-"
    return f"{count}x {gpu_type}" if count else gpu_type


def resource_row(resource: ResourceSummary, now: datetime, wide: bool = False) -> list[str]:
    return [
        short_id(resource.resource_id, wide),
        resource.name or "-",
        resource.status,
        gpu_text(resource.gpu_type, resource.gpu_count),
        resource.vendor or "-",
        resource.region or "-",
        money(resource.pricing_total_hourly),
        money(resource.cost_so_far),
        relative(resource.created_at, now),
        resource.access.ssh_command or "-",
    ]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """`90`, `90s`, `30m`, `2h`, `1d`, `1h30m` as seconds; ValueError otherwise."""
    cleaned = text.strip().lower()
    total, number = 0, ""
    if cleaned.isdigit():
        cleaned += "s"
    for char in cleaned:
        if char.isdigit():
            number += char
        elif char in _UNITS and number:
            total += int(number) * _UNITS[char]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (e.g. 3600, 90m, 2h, 1d)")
    if number or total <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 3600, 90m, 2h, 1d)")
    return total


USAGE_COLUMNS = (
    Column("COST", keep=9, right=True), Column("RUNNING H", keep=5, right=True), Column("STOPPED H", keep=4, right=True),
    Column("GPU H", keep=6, right=True), Column("RESOURCES", keep=3, right=True),
)


def usage_rows(report: UsageReportOut) -> tuple[list[Column], list[list[str]]]:
    """(columns, rows) of a usage report: one column per group key, then the numbers."""
    keys = list(report.group_by)
    rows = [
        [row.group.get(key, "-") for key in keys]
        + [money(row.cost), f"{row.running_hours:.2f}", f"{row.stopped_hours:.2f}", f"{row.gpu_hours:.2f}", str(row.resources)]
        for row in report.rows
    ]
    return [Column(key.upper(), keep=9) for key in keys] + list(USAGE_COLUMNS), rows


def budget_facts(budget: BudgetOut) -> list[tuple[str, str]]:
    used = f" ({budget.monthly_used_percent:.1f} % used)" if budget.monthly_used_percent is not None else ""
    return [
        ("tenant", budget.tenant),
        ("max hourly spend", f"{money(budget.max_hourly_spend)}/h" if budget.max_hourly_spend is not None else "none"),
        ("monthly budget", money(budget.monthly_budget) if budget.monthly_budget is not None else "none"),
        ("delete on exhaustion", "yes" if budget.delete_on_exhaustion else "no"),
        (f"spent in {budget.month}", money(budget.spent_this_month) + used),
        ("live spend", f"{money(budget.live_hourly_spend)}/h"),
        ("alerts sent", ", ".join(f"{a} %" for a in budget.alerts_sent) or "none"),
    ]


def transition(event: EventOut) -> str:
    if event.from_status is None and event.to_status is None:
        return "-"
    return f"{event.from_status or '-'} -> {event.to_status or '-'}"


def event_row(event: EventOut) -> list[str]:
    return [timestamp(event.at), event.kind, transition(event), event.reason or ""]


def resource_facts(resource: ResourceDetail, now: datetime) -> list[tuple[str, str]]:
    """`show`'s key/value lines."""
    facts = [
        ("resource", str(resource.resource_id)),
        ("name", resource.name or "-"),
        ("status", resource.status + (f" ({resource.status_message})" if resource.status_message else "")),
        ("gpu", gpu_text(resource.gpu_type, resource.gpu_count)),
        ("vendor", resource.vendor or "- (not chosen yet)"),
        ("region", region_text(resource.region, resource.vendor_region)),
        ("price", f"{money(resource.pricing_total_hourly)}/h"),
        ("cost so far", money(resource.cost_so_far)),
        ("ssh", resource.access.ssh_command or "-"),
        ("created", f"{timestamp(resource.created_at)} ({relative(resource.created_at, now)})"),
        ("running since", timestamp(resource.valid_from)),
        ("ended", timestamp(resource.valid_to)),
        ("offer", str(resource.offer_id) if resource.offer_id else "-"),
        ("procurement", str(resource.procurement_id)),
    ]
    limits = resource.auto_delete
    if limits is not None and (limits.delete_at or limits.spend_limit is not None):
        parts = []
        if limits.delete_at:
            parts.append(f"at {timestamp(limits.delete_at)} ({relative(limits.delete_at, now)})")
        if limits.spend_limit is not None:
            parts.append(f"at {money(limits.spend_limit)} spent")
        facts.append(("auto-delete", ", ".join(parts)))
    if resource.pending_action:
        facts.append(("pending action", resource.pending_action))
    if resource.delete_requested_at:
        facts.append(("delete requested", timestamp(resource.delete_requested_at)))
    return facts


# ----- consoles ----------------------------------------------------------------------------------
def width() -> int:
    """The terminal's width (COLUMNS when set); WIDE when stdout is not a terminal."""
    return console().width


def console(*, stderr: bool = False) -> Console:
    """A console on the current stdout/stderr; wide when not a terminal (pipes, files, tests)."""
    made = Console(stderr=stderr, highlight=False)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made = Console(stderr=stderr, highlight=False, width=WIDE)
    return made


def print_json(value: Any) -> None:
    """JSON on stdout, as is (no colours or wrapping): pydantic models as the API sends them."""
    print(json.dumps(jsonable(value), indent=2, default=str))


def jsonable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def print_cluster(cluster: ResourceDetail, nodes: Sequence[ResourceDetail], private_key: Path | None) -> None:
    """A ready cluster: its size and price, then each running node's SSH command."""
    out = console()
    running = [node for node in nodes if node.status == "running"]
    out.print(
        f"ready: cluster {cluster.name}, {len(running)} nodes, {cluster.gpu_count}x {cluster.gpu_type} on {cluster.vendor} "
        f"({money(cluster.pricing_total_hourly)}/h)"
    )
    for node in running:
        out.print(f"{node.name}: {ssh_command(node.access.ssh_command, private_key) or '(the vendor gave no SSH address)'}")
