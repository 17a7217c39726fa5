"""Budgets and per-resource limits: the refusal rules and alert thresholds (pure tables), live
and monthly spend, every procurement refusal and its message, GET/PUT budget tenancy, and the
engine's budget round (alerts once each per month, exhaustion)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from gpusupply.core.errors import NotFoundError, UnprocessableError
from gpusupply.db.models import Event, OfferRow, Resource, WebhookOutbox
from gpusupply.db.session import Database
from gpusupply.domain.guardrails import (
    alerts_due,
    evaluate_budgets,
    exhausted_resources,
    limited_resources,
    month_key,
    month_spend,
    month_start,
)
from gpusupply.services.budgets import (
    AutoDeleteValues,
    BudgetExceeded,
    auto_delete_values,
    get_budget,
    live_hourly_spend,
    procurement_refusal,
    put_budget,
    spec_price_bound,
)
from gpusupply.services.keys import authenticate, create_key
from gpusupply.services.offers import OffersRequest
from gpusupply.services.procurement import procure
from tests.conftest import SSH_KEY
from tests.services.cost_helpers import T0, at, make_resource, make_tenant, principal_for
from tests.services.helpers import principal, some_offers

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


# ----- pure ----------------------------------------------------------------------------------------
def test_month_boundaries() -> None:
    assert month_start(datetime(2026, 11, 20, 12, tzinfo=UTC)) == datetime(2026, 11, 1, tzinfo=UTC)
    assert month_key(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2026-12"


@pytest.mark.parametrize(
    ("spec", "bound"),
    [
        ({"compute": {"gpu_type": "H100", "gpu_count": 4, "max_price_per_gpu_hour": 2.5}}, 10.0),
        ({"compute": {"gpu_type": "H100", "max_price_per_gpu_hour": 2.5}}, 2.5),
        ({"compute": {"gpu_type": "H100", "gpu_count": 2}}, None),
        (None, None),
    ],
)
def test_spec_price_bound(spec: dict | None, bound: float | None) -> None:
    assert spec_price_bound(spec) == bound


@pytest.mark.parametrize(
    ("limits", "new", "live", "spent", "fragment"),
    [
        pytest.param({}, 5.0, 100.0, 1e6, None, id="no limits"),
        pytest.param({"max_hourly_spend": 10.0}, 4.0, 6.0, 0, None, id="exactly at the cap is allowed"),
        pytest.param({"max_hourly_spend": 10.0}, 4.5, 6.0, 0,
                     "max_hourly_spend exceeded: your live resources cost 6.00 USD/h and this procurement adds 4.50 USD/h, "
                     "10.50 USD/h in all, over the cap of 10.00 USD/h", id="hourly cap"),
        pytest.param({"monthly_budget": 100.0}, 2.0, 3.0, 94.0, None, id="one more hour still fits"),
        pytest.param({"monthly_budget": 100.0}, 2.0, 3.0, 95.5,
                     "monthly_budget exceeded: 95.50 USD spent this month, plus one more hour of your live resources "
                     "(3.00 USD/h) and of this procurement (2.00 USD/h) makes 100.50 USD, over the monthly budget of 100.00 USD",
                     id="monthly budget"),
        pytest.param({"monthly_budget": 100.0, "max_hourly_spend": 1.0}, 2.0, 0.0, 200.0, "max_hourly_spend exceeded",
                     id="the hourly cap is named first"),
    ],
)
def test_procurement_refusal(limits: dict[str, float], new: float, live: float, spent: float, fragment: str | None) -> None:
    refusal = procurement_refusal(
        max_hourly_spend=limits.get("max_hourly_spend"), monthly_budget=limits.get("monthly_budget"),
        new_hourly=new, live_hourly=live, month_spent=spent,
    )
    if fragment is None:
        assert refusal is None
    else:
        assert refusal is not None and fragment in refusal


@pytest.mark.parametrize(
    ("spent", "budget", "sent", "due"),
    [
        (10, 100, 0, []),
        (80, 100, 0, [80]),
        (85, 100, 80, []),
        (100, 100, 80, [100]),
        (150, 100, 0, [80, 100]),
        (150, 100, 100, []),
        (79.99, 100, 0, []),
        (5, 0, 0, []),
    ],
)
def test_alerts_due(spent: float, budget: float, sent: int, due: list[int]) -> None:
    assert alerts_due(spent, budget, sent) == due


@pytest.mark.parametrize(
    ("fields", "expected", "error"),
    [
        ({"ttl_seconds": 3600}, AutoDeleteValues(NOW + timedelta(hours=1), None), None),
        ({"delete_at": NOW + timedelta(days=1), "spend_limit": 25}, AutoDeleteValues(NOW + timedelta(days=1), 25.0), None),
        ({"delete_at": datetime(2026, 11, 20, 14, tzinfo=UTC).astimezone(UTC)}, AutoDeleteValues(datetime(2026, 11, 20, 14, tzinfo=UTC), None), None),
        ({"spend_limit": 5.5}, AutoDeleteValues(None, 5.5), None),
        ({"delete_at": None, "spend_limit": None}, AutoDeleteValues(None, None, True, True), None),
        ({"ttl_seconds": None}, AutoDeleteValues(None, None, True, False), None),
        ({"delete_at": NOW - timedelta(seconds=1)}, None, "delete_at must be in the future"),
        ({"delete_at": NOW}, None, "delete_at must be in the future"),
        ({"delete_at": datetime(2026, 12, 1)}, None, "delete_at needs a timezone"),
        ({"delete_at": NOW + timedelta(days=400)}, None, "within 366 days"),
        ({"delete_at": NOW + timedelta(hours=1), "ttl_seconds": 60}, None, "not both"),
        ({"ttl_seconds": 0}, None, "ttl_seconds must be 1-"),
        ({"ttl_seconds": True}, None, "ttl_seconds must be 1-"),
        ({"ttl_seconds": 1.5}, None, "ttl_seconds must be 1-"),
        ({"spend_limit": 0}, None, "spend_limit must be a positive amount"),
        ({"spend_limit": -3}, None, "spend_limit must be a positive amount"),
        ({"spend_limit": 1e12}, None, "spend_limit must be a positive amount"),
    ],
)
def test_auto_delete_values(fields: dict[str, Any], expected: AutoDeleteValues | None, error: str | None) -> None:
    if error is None:
        assert auto_delete_values(fields, NOW) == expected
    else:
        with pytest.raises(UnprocessableError, match=error) as caught:
            auto_delete_values(fields, NOW)
        assert caught.value.errors[0]["loc"][:2] == ["body", "auto_delete"]


# ----- spend ---------------------------------------------------------------------------------------
async def test_live_hourly_spend_counts_live_resources_and_spec_bounds(database: Database) -> None:
    tenant, other = await make_tenant(database), await make_tenant(database)
    await make_resource(database, tenant.id, price=2.0, history=[(0, "provisioning"), (1, "running")])
    await make_resource(database, tenant.id, price=1.5)  # pending
    await make_resource(database, tenant.id, price=None, vendor=None,
                        spec={"compute": {"gpu_type": "H100", "gpu_count": 2, "max_price_per_gpu_hour": 3.0}})
    await make_resource(database, tenant.id, price=None, vendor=None, spec={"compute": {"gpu_type": "H100"}})  # unbounded: 0
    await make_resource(database, tenant.id, price=4.0, history=[(0, "provisioning"), (1, "running"), (2, "stopping"), (2.1, "stopped")])
    await make_resource(database, tenant.id, price=100.0, history=[(0, "provisioning"), (1, "running"), (2, "deleting"), (3, "deleted")])
    await make_resource(database, other.id, price=50.0)
    async with database.session() as session:
        assert await live_hourly_spend(session, tenant.id) == pytest.approx(2.0 + 1.5 + 6.0 + 4.0)


async def test_month_spend_counts_only_this_month(database: Database) -> None:
    tenant = await make_tenant(database)
    # Runs from 20:00 on Oct 31 (T0 is Nov 10 08:00) to Nov 1 04:00: only 4 h fall into November.
    await make_resource(database, tenant.id, price=1.0, created=T0 - timedelta(days=10),
                        history=[(-228.5, "provisioning"), (-228, "running"), (-220, "deleting"), (-220, "deleted")])
    await make_resource(database, tenant.id, price=2.0, history=[(0, "provisioning"), (1, "running")])
    async with database.session() as session:
        assert await month_spend(session, tenant.id, at(3)) == pytest.approx(4 * 1.0 + 2 * 2.0)


# ----- procurement refusals (through the procurement service) --------------------------------------
async def _procure(service: Any, tenant: str = "alice", **kw: Any) -> dict[str, Any]:
    if "spec" not in kw:
        (offer,) = await some_offers(service, vendor=kw.pop("vendor", "nebula"))
        kw.setdefault("offer_id", offer.offer_id)
    kw.setdefault("offer_id", None)
    kw.setdefault("spec", None)
    outcome = await procure(
        service.db, service.catalog, await principal(service, tenant), ssh_public_key=SSH_KEY, cloud_init=None,
        resource_name=None, idempotency_key=None, body={}, **kw,
    )
    return outcome.response


async def test_hourly_cap_refuses_and_leaves_the_offer_available(service: Any) -> None:
    alice = await principal(service, "alice")
    offers = await some_offers(service, 2, vendor="nebula")
    first, second = offers
    cap = first.offer.total_price_per_hour + second.offer.total_price_per_hour - 0.01
    await put_budget(service.db, alice, max_hourly_spend=cap, monthly_budget=None, delete_on_exhaustion=False)
    await _procure(service, offer_id=first.offer_id)
    with pytest.raises(BudgetExceeded) as caught:
        await _procure(service, offer_id=second.offer_id)
    assert caught.value.status_code == 402
    message = caught.value.detail
    assert message.startswith("procurement refused: max_hourly_spend exceeded")
    assert f"{first.offer.total_price_per_hour:,.2f} USD/h" in message and f"{cap:,.2f} USD/h" in message
    async with service.db.session() as session:
        row = await session.get(OfferRow, second.offer_id)
        count = (await session.execute(select(func.count()).select_from(Resource))).scalar_one()
    assert row is not None and row.status == "available"  # rolled back with the refusal
    assert count == 1
    # Bob has no budget: his procurements are not limited by Alice's.
    await _procure(service, tenant="bob", offer_id=second.offer_id)


async def test_monthly_budget_refuses_with_the_numbers(service: Any) -> None:
    alice = await principal(service, "alice")
    (offer,) = await some_offers(service, vendor="nebula")
    budget = offer.offer.total_price_per_hour / 2
    await put_budget(service.db, alice, max_hourly_spend=None, monthly_budget=budget, delete_on_exhaustion=False)
    with pytest.raises(BudgetExceeded, match="monthly_budget exceeded: 0.00 USD spent this month") as caught:
        await _procure(service, offer_id=offer.offer_id)
    assert f"over the monthly budget of {budget:,.2f} USD" in caught.value.detail


async def test_spec_procurement_is_bounded_by_max_price_times_count(service: Any) -> None:
    alice = await principal(service, "alice")
    await put_budget(service.db, alice, max_hourly_spend=5.0, monthly_budget=None, delete_on_exhaustion=False)
    spec = OffersRequest.model_validate({"compute": {"gpu_type": "H100", "gpu_count": 2, "max_price_per_gpu_hour": 3.0}})
    with pytest.raises(BudgetExceeded, match=r"adds 6.00 USD/h, 6.00 USD/h in all, over the cap of 5.00 USD/h"):
        await _procure(service, spec=spec)
    unbounded = OffersRequest.model_validate({"compute": {"gpu_type": "H100"}})
    with pytest.raises(UnprocessableError, match="give compute.max_price_per_gpu_hour") as caught:
        await _procure(service, spec=unbounded)
    assert caught.value.errors[0]["loc"] == ["body", "spec", "compute", "max_price_per_gpu_hour"]
    fits = OffersRequest.model_validate({"compute": {"gpu_type": "H100", "gpu_count": 1, "max_price_per_gpu_hour": 2.6}})
    await _procure(service, spec=fits)
    with pytest.raises(BudgetExceeded, match=r"your live resources cost 2.60 USD/h"):  # the pending spec counts at its bound
        await _procure(service, spec=fits)


async def test_auto_delete_is_stored_at_procurement(service: Any) -> None:
    response = await _procure(service, auto_delete={"ttl_seconds": 7200, "spend_limit": 12.5})
    async with service.db.session() as session:
        resource = await session.get(Resource, uuid.UUID(response["resource_ids"][0]))
    assert resource is not None and resource.spend_limit == 12.5
    assert resource.auto_delete_at is not None
    assert timedelta(minutes=119) < resource.auto_delete_at - resource.created_at <= timedelta(minutes=121)
    with pytest.raises(UnprocessableError, match="delete_at must be in the future"):
        await _procure(service, auto_delete={"delete_at": datetime(2020, 1, 1, tzinfo=UTC)})


# ----- GET / PUT budget ----------------------------------------------------------------------------
async def test_budget_tenancy_and_admin(database: Database) -> None:
    alice_tenant, bob_tenant = await make_tenant(database, "alice"), await make_tenant(database, "bob")
    alice, bob = principal_for(alice_tenant), principal_for(bob_tenant)
    admin = principal_for(await make_tenant(database, "ops"), admin=True)
    empty = await get_budget(database, alice)
    assert (empty.tenant, empty.max_hourly_spend, empty.monthly_budget, empty.spent_this_month) == ("alice", None, None, 0.0)
    view = await put_budget(database, alice, max_hourly_spend=10, monthly_budget=500, delete_on_exhaustion=True)
    assert (view.max_hourly_spend, view.monthly_budget, view.delete_on_exhaustion) == (10.0, 500.0, True)
    assert (await get_budget(database, alice, "alice")).monthly_budget == 500.0
    with pytest.raises(NotFoundError, match="tenant 'alice' not found"):
        await get_budget(database, bob, "alice")  # another tenant's budget: 404, never 403
    with pytest.raises(NotFoundError):
        await put_budget(database, bob, max_hourly_spend=1, monthly_budget=None, delete_on_exhaustion=False, tenant="alice")
    assert (await get_budget(database, admin, "alice")).monthly_budget == 500.0
    await put_budget(database, admin, max_hourly_spend=None, monthly_budget=50, delete_on_exhaustion=False, tenant="bob")
    assert (await get_budget(database, bob)).monthly_budget == 50.0
    with pytest.raises(NotFoundError, match="tenant 'nobody' not found"):
        await get_budget(database, admin, "nobody")


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"max_hourly_spend": 0, "monthly_budget": None, "delete_on_exhaustion": False}, "max_hourly_spend must be a positive amount"),
        ({"max_hourly_spend": None, "monthly_budget": -1, "delete_on_exhaustion": False}, "monthly_budget must be a positive amount"),
        ({"max_hourly_spend": 5, "monthly_budget": None, "delete_on_exhaustion": True}, "delete_on_exhaustion needs a monthly_budget"),
    ],
)
async def test_put_budget_validation(database: Database, values: dict[str, Any], error: str) -> None:
    alice = principal_for(await make_tenant(database))
    with pytest.raises(UnprocessableError, match=error):
        await put_budget(database, alice, **values)


# ----- the budget round ----------------------------------------------------------------------------
async def _budget_events(db: Database, tenant_id: uuid.UUID) -> list[Event]:
    async with db.session() as session:
        return list((await session.execute(select(Event).where(Event.kind == "budget_alert", Event.tenant_id == tenant_id).order_by(Event.id))).scalars())


async def test_budget_alerts_once_each_per_month_and_exhaustion(database: Database) -> None:
    tenant = await make_tenant(database)
    alice = principal_for(tenant)
    await put_budget(database, alice, max_hourly_spend=None, monthly_budget=10.0, delete_on_exhaustion=True, now=at(0))
    running = await make_resource(database, tenant.id, price=1.0, history=[(0, "provisioning"), (1, "running")])
    quiet = await make_tenant(database)
    await put_budget(database, principal_for(quiet), max_hourly_spend=None, monthly_budget=10.0, delete_on_exhaustion=False, now=at(0))

    assert (await evaluate_budgets(database, at(8))).alerts == []  # 7 USD: 70 %
    first = await evaluate_budgets(database, at(9.5))  # 8.5 USD
    assert first.alerts == [(tenant.id, 80)] and first.exhausted == []
    assert (await evaluate_budgets(database, at(10))).alerts == []  # 80 % is sent once
    done = await evaluate_budgets(database, at(11.5))  # 10.5 USD
    assert done.alerts == [(tenant.id, 100)] and done.exhausted == [tenant.id]
    assert (await evaluate_budgets(database, at(12))).alerts == []
    events = await _budget_events(database, tenant.id)
    assert [e.data["threshold"] for e in events] == [80, 100]  # type: ignore[index]
    assert events[1].reason == "100% of the monthly budget used: 10.50 USD of 10.00 USD in 2026-11"
    assert events[1].resource_id is None
    async with database.session() as session:
        outbox = (await session.execute(select(func.count()).select_from(WebhookOutbox).where(WebhookOutbox.event_id.in_([e.id for e in events])))).scalar_one()
    assert outbox == 2  # each alert is queued for webhooks in its own transaction
    assert await exhausted_resources(database, done.exhausted) == [running]
    view = await get_budget(database, alice, now=at(12))
    assert view.alerts_sent == [80, 100] and view.monthly_used_percent == pytest.approx(110.0)
    # A new month starts afresh: the resource keeps running, December is alerted again at 80 %.
    december = datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert (await evaluate_budgets(database, december)).alerts == [(tenant.id, 80)]


async def test_a_new_monthly_budget_restarts_its_alerts(database: Database) -> None:
    tenant = await make_tenant(database)
    alice = principal_for(tenant)
    await put_budget(database, alice, max_hourly_spend=None, monthly_budget=10.0, delete_on_exhaustion=False, now=at(0))
    await make_resource(database, tenant.id, price=1.0, history=[(0, "provisioning"), (1, "running")])
    assert (await evaluate_budgets(database, at(10))).alerts == [(tenant.id, 80)]
    await put_budget(database, alice, max_hourly_spend=None, monthly_budget=100.0, delete_on_exhaustion=False, now=at(10))
    assert (await evaluate_budgets(database, at(11))).alerts == []
    await put_budget(database, alice, max_hourly_spend=None, monthly_budget=12.0, delete_on_exhaustion=False, now=at(11))
    assert (await evaluate_budgets(database, at(11))).alerts == [(tenant.id, 80)]


async def test_limited_resources(database: Database) -> None:
    tenant = await make_tenant(database)
    timed = await make_resource(database, tenant.id, auto_delete_at=at(5))
    capped = await make_resource(database, tenant.id, spend_limit=3.0, history=[(0, "provisioning"), (1, "running")])
    await make_resource(database, tenant.id, spend_limit=3.0)  # never ran: nothing to check yet
    await make_resource(database, tenant.id, auto_delete_at=at(5), history=[(0, "deleting")])
    await make_resource(database, tenant.id)
    assert {r.id for r in await limited_resources(database)} == {timed, capped}


async def test_admin_key_principal_is_admin(service: Any) -> None:
    _, token = await create_key(service.db, "ops-key", tenant="ops", admin=True)
    admin = await authenticate(service.db, f"Bearer {token}")
    assert admin.is_admin
    await put_budget(service.db, admin, max_hourly_spend=0.01, monthly_budget=None, delete_on_exhaustion=False, tenant="alice")
    with pytest.raises(BudgetExceeded):
        await _procure(service)
