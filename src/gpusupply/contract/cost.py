"""Request and response models of the cost routes: usage, budgets, auto-delete and webhooks
(docs/cost.md). Plain pydantic, like `schemas.py`: the server and the SDK share them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from gpusupply.core.inputs import CheckedModel


# ----- per-resource limits -------------------------------------------------------------------------
class AutoDeleteIn(CheckedModel):
    """When gpusupply deletes the resource by itself. In a PATCH, a key sent as null removes that
    limit and a key left out keeps it."""

    model_config = ConfigDict(extra="forbid")

    delete_at: datetime | None = Field(None, description="ISO 8601 instant with a zone, in the future (within 366 days).")
    ttl_seconds: int | None = Field(None, description="Instead of delete_at: this many seconds from now (1 s - 366 days).")
    spend_limit: float | None = Field(None, description="USD: delete once the cost so far reaches it.")


class AutoDeleteOut(BaseModel):
    delete_at: datetime | None
    spend_limit: float | None


class ResourcePatch(CheckedModel):
    model_config = ConfigDict(extra="forbid")

    auto_delete: AutoDeleteIn | None = Field(
        description="The limits to set (merged with the current ones); null removes every limit."
    )


# ----- budgets -------------------------------------------------------------------------------------
class BudgetIn(CheckedModel):
    """The whole budget: a limit left out (or null) is removed."""

    model_config = ConfigDict(extra="forbid")

    max_hourly_spend: float | None = Field(None, description="USD/h: cap on the sum of your live resources' prices.")
    monthly_budget: float | None = Field(None, description="USD per UTC calendar month.")
    delete_on_exhaustion: bool = Field(False, description="At 100 % of monthly_budget, delete your live resources.")


class BudgetOut(BaseModel):
    tenant: str
    max_hourly_spend: float | None
    monthly_budget: float | None
    delete_on_exhaustion: bool
    month: str = Field(examples=["2026-11"])
    spent_this_month: float = Field(description="USD billed so far this month (UTC).")
    live_hourly_spend: float = Field(description="USD/h of your live resources (by spec: its bound until an offer is chosen).")
    monthly_used_percent: float | None
    alerts_sent: list[int] = Field(description="Thresholds (80, 100) already alerted this month.")
    updated_at: datetime | None


# ----- usage ---------------------------------------------------------------------------------------
class UsageRowOut(BaseModel):
    group: dict[str, str] = Field(examples=[{"vendor": "vast"}], description="The group's values, one per group_by key.")
    cost: float = Field(description="USD.")
    running_hours: float
    stopped_hours: float
    gpu_hours: float = Field(description="Running hours x GPUs.")
    resources: int


class UsageReportOut(BaseModel):
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    group_by: list[str]
    currency: Literal["USD"] = "USD"
    tenants: list[str]
    total_cost: float
    rows: list[UsageRowOut]

    model_config = ConfigDict(populate_by_name=True)


# ----- webhooks ------------------------------------------------------------------------------------
class WebhookIn(CheckedModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http(s) URL on a public address.")
    events: list[str] | None = Field(None, max_length=20, description="Event types to receive; default all ('*').")
    description: str | None = Field(None, max_length=200)


class WebhookOut(BaseModel):
    webhook_id: UUID
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    deliveries_url: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret, shown this once. Keep it to verify X-Gpusupply-Signature.")


class WebhookDeleted(BaseModel):
    webhook_id: UUID
    message: str


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]
    event_types: dict[str, str] = Field(description="Every event type and what it means.")


class DeliveryAttempt(BaseModel):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    delivery_id: UUID
    event_type: str
    event_id: int | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="When pending: the next try.")
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[DeliveryAttempt] = Field(description="The latest attempts, oldest first.")
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    webhook_id: UUID
    deliveries: list[DeliveryOut] = Field(description="Newest first.")
    total_count: int
    limit: int
    offset: int
