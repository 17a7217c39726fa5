"""Procurement: the rows the engine relies on, input checks, races and idempotency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gpusupply.core.errors import ConflictError, GoneError, NotFoundError, UnprocessableError
from gpusupply.core.offers import offer_to_dict
from gpusupply.db.models import Event, OfferRow, Procurement, Resource, utcnow
from gpusupply.services.offers import OffersRequest
from gpusupply.services.procurement import (
    accepted_cloud_init,
    check_cloud_init,
    check_cloud_init_for_vendor,
    check_idempotency_key,
    check_resource_name,
    check_ssh_public_key,
    offer_status,
    procure,
    request_hash,
)
from gpusupply.settings import VENDORS
from tests.conftest import BACKENDS, SSH_KEY
from tests.services.helpers import principal, some_offers

RSA_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7vbqajDhA4n1Ow6VCHwXrJL6sJ9hq3HkqfvNvTxN2mQ9xGz1v0Qjq4fhEqA9Yl9w2kUuD"
    "0Yp2n8cXr9n4T1A7m2Zq3gkY3pZV2bUxtx7p3QfHh3bQn8uKbT1tqVh6R0rWb5nT6M0yC2fQvJb6Yy3Yk9x8hQ3Lw1vX9rQ0x5G1t8b7"
    "Qq2fCkE7v2N9bFh6yQ1pW3D2nGm8cV0sR4tZ6aY1uL2hK3jM4nN5oP6qR7sT8uV9wX0yZ1aB2cD3eF4gH5iJ6kL7mN8oP9qR0sT1uV2w"
    "X3yZ4aB5cD6eF7gH8iJ9kL0mN1oP2qR3sT4uV5wX6yZ7aB8cD9eF0gH1iJ2kL3mN4oP5qR6sT7uV8wX9yZ0aB1cD2eF3gH4iJ5kL6mN7o"
    "P8qR9sT0uV1wX2y me@host"
)


async def call(service: Any, offer_id: Any = None, *, key: str | None = None, tenant: str = "alice", **fields: Any) -> Any:
    body = {"offer_id": str(offer_id) if offer_id else None, "ssh_public_key": SSH_KEY, **fields}
    spec = fields.pop("spec", None)
    return await procure(
        service.db,
        service.catalog,
        await principal(service, tenant),
        offer_id=offer_id,
        spec=OffersRequest.model_validate(spec) if spec else None,
        ssh_public_key=fields.get("ssh_public_key", SSH_KEY),
        cloud_init=fields.get("cloud_init"),
        resource_name=fields.get("resource_name"),
        idempotency_key=key,
        body=body,
    )


# ----- pure checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [SSH_KEY, f"  {SSH_KEY}\n", SSH_KEY.rsplit(" ", 1)[0]])
def test_valid_ssh_keys(key: str) -> None:
    assert check_ssh_public_key(key) == key.strip()


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not a key", "not a valid OpenSSH public key"),
        ("ssh-ed25519 AAAA", "not a valid"),
        (RSA_KEY, "not a valid"),  # garbage that only looks like an RSA key
        (f"{SSH_KEY}\n{SSH_KEY}", "single"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "not a valid"),
        ("ssh-ed25519 " + "A" * 20000, "single"),
    ],
)
def test_invalid_ssh_keys(key: str, needle: str) -> None:
    with pytest.raises(UnprocessableError) as caught:
        check_ssh_public_key(key)
    assert needle in caught.value.errors[0]["msg"]
    assert caught.value.errors[0]["loc"] == ["body", "ssh_public_key"]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (None, True),
        ("#cloud-config\npackages: [htop]\n", True),
        ("#!/bin/bash\necho hi\n", True),
        ("#!/usr/bin/env python3\n", True),
        ("#cloud-config\n" + "x" * (64 * 1024 - 14), True),
        ("#cloud-config\n" + "x" * (64 * 1024), False),
        ("echo hi", False),
        ("", False),
        (" #cloud-config", False),
        ("#!bin/sh", False),
    ],
)
def test_cloud_init(text: str | None, ok: bool) -> None:
    if ok:
        assert check_cloud_init(text) == text
    else:
        with pytest.raises(UnprocessableError):
            check_cloud_init(text)


@pytest.mark.parametrize(("name", "ok"), [(None, True), ("my-box", True), ("  padded  ", True), ("", False), ("x" * 201, False), ("a\nb", False)])
def test_resource_name(name: str | None, ok: bool) -> None:
    if ok:
        assert check_resource_name(name) == (name.strip() if name else None)
    else:
        with pytest.raises(UnprocessableError):
            check_resource_name(name)


@pytest.mark.parametrize(("key", "ok"), [(None, True), ("abc-123", True), ("x" * 200, True), ("", False), ("x" * 201, False), ("é", False), ("a\tb", False)])
def test_idempotency_key(key: str | None, ok: bool) -> None:
    if ok:
        assert check_idempotency_key(key) == key
    else:
        with pytest.raises(UnprocessableError):
            check_idempotency_key(key)


def test_request_hash_ignores_key_order() -> None:
    assert request_hash({"a": 1, "b": [1, 2]}) == request_hash({"b": [1, 2], "a": 1})
    assert request_hash({"a": 1}) != request_hash({"a": 2})


# ----- the rows -----------------------------------------------------------------------------------
async def test_procure_writes_the_contract_rows(service: Any) -> None:
    (offer,) = await some_offers(service, vendor="vast")
    outcome = await call(service, offer.offer_id, key="k1", cloud_init="#!/bin/sh\necho hi\n", resource_name="box")
    assert not outcome.replayed
    response = outcome.response
    assert response["offer_id"] == str(offer.offer_id) and response["status"] == "provisioning_in_progress"
    assert response["error"] is None and len(response["resource_ids"]) == 1
    async with service.db.session() as session:
        procurement = (await session.execute(select(Procurement))).scalar_one()
        resource = (await session.execute(select(Resource))).scalar_one()
        row = await session.get(OfferRow, offer.offer_id)
        events = (await session.execute(select(Event))).scalars().all()
    alice = service.tenants["alice"].tenant_id
    assert (procurement.tenant_id, procurement.offer_id, procurement.status) == (alice, offer.offer_id, "provisioning_in_progress")
    assert procurement.idempotency_key == "k1" and procurement.request_hash and procurement.response == response
    assert str(resource.id) == response["resource_ids"][0]
    assert resource.status == "pending" and resource.tenant_id == alice and resource.procurement_id == procurement.id
    assert (resource.vendor, resource.vendor_region, resource.region) == ("vast", offer.offer.vendor_region, offer.offer.region)
    assert (resource.gpu_type, resource.gpu_family, resource.gpu_count) == (
        offer.offer.gpu_type,
        offer.offer.gpu_family,
        offer.offer.gpu_count,
    )
    assert resource.price_per_hour == offer.offer.total_price_per_hour
    assert resource.offer_snapshot == offer_to_dict(offer.offer) and "vendor_data" in resource.offer_snapshot
    assert resource.ssh_public_key == SSH_KEY and resource.cloud_init == "#!/bin/sh\necho hi\n" and resource.name == "box"
    assert resource.next_attempt_at is not None and resource.vendor_instance_id is None and resource.lock_token is None
    assert (row.status, row.procured_by) == ("procured", alice) and row.procured_at is not None
    assert [(e.kind, e.from_status, e.to_status) for e in events] == [("status_change", None, "pending")]
    # Gone from search at once (this replica) ...
    assert offer.offer_id not in {s.offer_id for s in (await service.catalog.search(_everything(), limit=10_000)).offers}
    # ... and the status says pending.
    status = await offer_status(service.db, await principal(service), offer.offer_id)
    assert status.procurement_status == "pending" and status.progress == "0/1 instances running"


def _everything() -> Any:
    from gpusupply.core.offers import OfferQuery

    return OfferQuery()


async def test_procure_by_spec(service: Any) -> None:
    spec = {"compute": {"gpu_type": "h100", "gpu_count": 1, "max_price_per_gpu_hour": 9}, "region": "us"}
    outcome = await call(service, spec=spec)
    assert outcome.response["offer_id"] is None
    async with service.db.session() as session:
        procurement = (await session.execute(select(Procurement))).scalar_one()
        resource = (await session.execute(select(Resource))).scalar_one()
    assert procurement.spec == {"compute": {"gpu_type": "H100", "gpu_count": 1, "max_price_per_gpu_hour": 9.0}, "region": "US"}
    assert procurement.offer_id is None and resource.offer_id is None and resource.vendor is None
    assert (resource.status, resource.gpu_family, resource.gpu_count) == ("pending", "H100", 1)
    second = await call(service, spec={"compute": {"gpu_type": "nvidia-a100-pcie-40gb", "gpu_count": 2}})
    async with service.db.session() as session:
        other = await session.get(Resource, uuid.UUID(second.response["resource_ids"][0]))
    assert (other.gpu_type, other.gpu_family, other.gpu_count) == ("nvidia-a100-pcie-40gb", "A100", 2)


@pytest.mark.parametrize(
    ("spec", "loc"),
    [
        ({"compute": {"gpu_type": "B300"}}, ["body", "spec", "compute", "gpu_type"]),
        ({"compute": {"gpu_type": "H100"}, "region": "Moon"}, ["body", "spec", "region"]),
    ],
)
async def test_bad_spec_writes_nothing(service: Any, spec: dict, loc: list[str]) -> None:
    with pytest.raises(UnprocessableError) as caught:
        await call(service, spec=spec)
    assert caught.value.errors[0]["loc"] == loc
    await _assert_nothing_written(service)


async def _assert_nothing_written(service: Any) -> None:
    async with service.db.session() as session:
        assert (await session.execute(select(func.count()).select_from(Procurement))).scalar_one() == 0
        assert (await session.execute(select(func.count()).select_from(Resource))).scalar_one() == 0
        assert (await session.execute(select(func.count()).select_from(Event))).scalar_one() == 0


async def test_unknown_expired_and_taken_offers(service: Any) -> None:
    first, second = await some_offers(service, 2)
    with pytest.raises(NotFoundError):
        await call(service, _random_uuid())
    async with service.db.transaction() as session:
        await session.execute(update(OfferRow).where(OfferRow.id == first.offer_id).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(GoneError, match="expired"):
        await call(service, first.offer_id)
    with pytest.raises(UnprocessableError):
        await call(service, second.offer_id, ssh_public_key="nope")
    await _assert_nothing_written(service)
    await call(service, second.offer_id)
    with pytest.raises(ConflictError, match="already procured"):
        await call(service, second.offer_id, tenant="bob")


def _random_uuid() -> Any:
    import uuid

    return uuid.uuid4()


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_concurrent_procures_of_one_offer(service: Any) -> None:
    (offer,) = await some_offers(service)
    outcomes = await asyncio.gather(
        *(call(service, offer.offer_id, tenant=tenant) for tenant in ["alice", "bob"] * 4), return_exceptions=True
    )
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(winners) == 1
    assert all(isinstance(o, ConflictError) for o in outcomes if isinstance(o, Exception)), outcomes
    async with service.db.session() as session:
        assert (await session.execute(select(func.count()).select_from(Resource))).scalar_one() == 1


@pytest.mark.parametrize("service_backend", BACKENDS)
async def test_idempotent_retries(service: Any) -> None:
    first, second = await some_offers(service, 2)
    outcomes = await asyncio.gather(*(call(service, first.offer_id, key="retry-me") for _ in range(5)))
    assert len({str(o.response) for o in outcomes}) == 1
    assert sum(not o.replayed for o in outcomes) == 1
    # The key is per tenant: bob may use the same key for his own request.
    await call(service, second.offer_id, key="retry-me", tenant="bob")
    # Same key, different body: refused, nothing written.
    with pytest.raises(UnprocessableError, match="different request body"):
        await call(service, second.offer_id, key="retry-me")
    async with service.db.session() as session:
        assert (await session.execute(select(func.count()).select_from(Procurement))).scalar_one() == 2


@pytest.mark.parametrize(
    ("vendor", "cloud_init", "ok"),
    [
        ("vast", "#!/bin/bash\necho hi\n", True),
        ("vast", "#cloud-config\n{}\n", False),
        ("fal", "#!/bin/sh\n", False),
        ("fal", "#cloud-config\n", False),
        ("nebula", "#!/bin/sh\n", False),
        ("nebula", None, True),
        ("lambda", "#cloud-config\n{}\n", True),
        ("lambda", "#!/bin/sh\n", True),
        ("elsewhere", "#cloud-config\n", True),
    ],
)
def test_cloud_init_per_vendor(vendor: str, cloud_init: str | None, ok: bool) -> None:
    if ok:
        check_cloud_init_for_vendor(vendor, cloud_init)
    else:
        with pytest.raises(UnprocessableError, match=f"vendor {vendor}"):
            check_cloud_init_for_vendor(vendor, cloud_init)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_cloud_init_table_agrees_with_the_adapters(service: Any, vendor: str) -> None:
    # What we refuse up front, the vendor's adapter would refuse at create time (no HTTP needed).
    from gpusupply.core.errors import InvalidRequest
    from gpusupply.vendors.base import CreateRequest

    (offer,) = await some_offers(service, vendor=vendor)
    for script in ("#cloud-config\n{}\n", "#!/bin/sh\necho hi\n"):
        try:
            check_cloud_init_for_vendor(vendor, script)
        except UnprocessableError:
            with pytest.raises(InvalidRequest):
                await service.vendors.adapters[vendor].create(CreateRequest(_random_uuid(), offer.offer, SSH_KEY, script))
    if "#cloud-config" in accepted_cloud_init(vendor):
        return  # this vendor runs cloud-config (Lambda: as user_data): nothing to refuse
    with pytest.raises(UnprocessableError):
        await call(service, offer.offer_id, cloud_init="#cloud-config\n{}\n")
    await _assert_nothing_written(service)
    assert (await service.catalog.get(offer.offer_id)).status == "available"
