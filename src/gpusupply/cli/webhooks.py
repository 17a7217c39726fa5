"""`gpusupply webhooks ...`: register, list and remove webhooks, and read their deliveries.

A client of the SDK like `cli/commands.py`, sharing its options, error handling and output. The
signing secret is printed once, when the webhook is added (the API never shows it again)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from gpusupply.cli import output
from gpusupply.cli.commands import ApiKeyOption, JsonOption, UrlOption, connect, handled, now, print_table
from gpusupply.contract.cost import DeliveryOut, WebhookOut

PANEL = "Cost and guardrails"
WEBHOOK_COLUMNS = (
    output.Column("WEBHOOK ID", keep=9), output.Column("URL", keep=9, flex=True), output.Column("EVENTS", keep=6, flex=True),
    output.Column("DESCRIPTION", keep=3, flex=True), output.Column("CREATED", keep=2),
)
DELIVERY_COLUMNS = (
    output.Column("DELIVERY ID", keep=9), output.Column("EVENT", keep=8), output.Column("STATUS", keep=9),
    output.Column("ATTEMPTS", keep=4, right=True), output.Column("LAST ANSWER", keep=6, flex=True),
    output.Column("CREATED", keep=3), output.Column("NEXT TRY", keep=2),
)

WebhookArgument = Annotated[str, typer.Argument(help="The webhook id (a UUID).", show_default=False)]


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def webhook_row(webhook: WebhookOut, at: datetime) -> list[str]:
    return [
        str(webhook.webhook_id), webhook.url, ",".join(webhook.events), webhook.description or "-",
        output.relative(webhook.created_at, at),
    ]


def last_answer(delivery: DeliveryOut) -> str:
    """What the receiver last did: its HTTP status, or why it could not be reached."""
    if delivery.last_status_code is not None:
        return f"HTTP {delivery.last_status_code}"
    return delivery.last_error or "-"


def delivery_row(delivery: DeliveryOut, at: datetime) -> list[str]:
    next_try = output.relative(delivery.next_attempt_at, at) if delivery.status == "pending" else "-"
    return [
        str(delivery.delivery_id), delivery.event_type, delivery.status, str(delivery.attempts), last_answer(delivery),
        output.relative(delivery.created_at, at), next_try,
    ]


def list_webhooks(url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Your webhooks (and, with --json, every event type they can subscribe to)."""
    with connect(url, api_key) as gs:
        found = gs.list_webhooks()
    if json_output:
        output.print_json(found)
        return
    if not found.webhooks:
        output.console(stderr=True).print("no webhooks; add one with `gpusupply webhooks add URL`")
        return
    at = now()
    print_table(WEBHOOK_COLUMNS, [webhook_row(w, at) for w in found.webhooks])


def add(
    target: Annotated[str, typer.Argument(metavar="URL", help="Where to POST events: an http(s) URL on a public address.",
                                          show_default=False)],
    event: Annotated[list[str] | None, typer.Option(
        "--event", "-e", help="An event type to receive (repeat it); default all. See `gpusupply webhooks events`.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="A note for yourself.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Register a webhook and print its signing secret (shown this once)."""
    with connect(url, api_key) as gs:
        created = gs.create_webhook(target, events=event or None, description=description)
    if json_output:
        output.print_json(created)
        return
    out = output.console()
    out.print(f"webhook {created.webhook_id}: {created.url} ({', '.join(created.events)})", soft_wrap=True)
    out.print(f"secret: {created.secret}", soft_wrap=True)
    out.print("keep the secret to verify the X-Gpusupply-Signature header; it is not shown again")


def delete(webhook_id: WebhookArgument, url: UrlOption = None, api_key: ApiKeyOption = None,
           json_output: JsonOption = False) -> None:
    """Remove a webhook: nothing more is sent to it."""
    with connect(url, api_key) as gs:
        deleted = gs.delete_webhook(webhook_id)
    if json_output:
        output.print_json(deleted)
        return
    output.console().print(f"{deleted.webhook_id}: {deleted.message}", soft_wrap=True)


def deliveries(
    webhook_id: WebhookArgument,
    status: Annotated[DeliveryStatus | None, typer.Option("--status", case_sensitive=False, help="Only these.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Show at most this many, newest first.")] = 20,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """A webhook's deliveries, newest first: status, attempts and the receiver's last answer."""
    with connect(url, api_key) as gs:
        found = gs.list_deliveries(webhook_id, status=status.value if status else None, limit=limit)
    if json_output:
        output.print_json(found)
        return
    if not found.deliveries:
        output.console(stderr=True).print("no deliveries yet")
        return
    at = now()
    out = output.console()
    print_table(DELIVERY_COLUMNS, [delivery_row(d, at) for d in found.deliveries])
    out.print(f"{len(found.deliveries)} of {found.total_count} deliveries, newest first")


def events(url: UrlOption = None, api_key: ApiKeyOption = None, json_output: JsonOption = False) -> None:
    """Every event type a webhook can receive, and what it means."""
    with connect(url, api_key) as gs:
        known = gs.list_webhooks().event_types
    if json_output:
        output.print_json(known)
        return
    print_table((output.Column("EVENT", keep=9), output.Column("MEANING", keep=9, flex=True)),
                [[name, meaning] for name, meaning in known.items()])


COMMANDS: dict[str, Callable[..., Any]] = {"list": list_webhooks, "add": add, "delete": delete, "deliveries": deliveries, "events": events}


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Webhooks: get resource and budget events POSTed to your URL.", no_args_is_help=True)
    for name, command in COMMANDS.items():
        group.command(name)(handled(command))
    app.add_typer(group, name="webhooks", rich_help_panel=PANEL)
