"""Procurement: turning an offer (or a spec) into intent rows the engine provisions.

`POST /procure_offer` writes, in one transaction, a `Procurement`, one `Resource` (status
`pending`) and marks the offer `procured`; the engine does the vendor work afterwards (the
API/engine contract in docs/engine.md). Nothing here calls a vendor.

Idempotency: with an `Idempotency-Key` header, the first successful answer is stored on the
procurement; a retry with the same key and the same body gets that answer again (and no second
procurement); the same key with a different body is refused with 422.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gpusupply.core.errors import (
    ConflictError,
    GoneError,
    NotFoundError,
    ServiceError,
    UnprocessableError,
)
from gpusupply.core.inputs import require_text
from gpusupply.core.offers import Offer, offer_from_dict
from gpusupply.core.states import ProcurementStatus, ResourceStatus, procurement_status
from gpusupply.db.models import OfferRow, PriceAlert, Procurement, Resource, utcnow
from gpusupply.db.session import Database
from gpusupply.domain import clusters
from gpusupply.domain.catalog import OfferCatalog, effective_status
from gpusupply.domain.hints import hint
from gpusupply.domain.intents import (
    STATUS_IN_PROGRESS,
    check_capacity,
    claim_offer,
    fill_from_offer,
    fill_from_query,
    new_resource,
    spec_procurement,
    write_intent,
)
from gpusupply.services import reads
from gpusupply.services.budgets import AutoDeleteValues, apply_auto_delete, auto_delete_values
from gpusupply.services.keys import Principal
from gpusupply.services.offers import OffersRequest, normalized_document, query_from_request
from gpusupply.vendors.registry import cloud_init_forms

MAX_CLOUD_INIT_BYTES = 64 * 1024
MAX_SSH_KEY_CHARS = 16 * 1024
MAX_IDEMPOTENCY_KEY_CHARS = 200
CLOUD_INIT_PREFIXES = ("#cloud-config", "#!/")


@dataclass(slots=True)
class ProcureOutcome:
    response: dict[str, Any]  # {offer_id, status, procured_at, resource_ids, error}
    replayed: bool  # answered from an earlier request with the same Idempotency-Key


@dataclass(slots=True)
class OfferStatus:
    offer_id: UUID
    status: str  # the offer's own status
    created_at: datetime | None
    procurement_status: str
    resources: list[Any]  # rows with a resource's id, status, access and running_since
    progress: str
    failure_reason: str | None
    procured_at: datetime | None


# ----- input checks (pure) -----------------------------------------------------------------------
def check_ssh_public_key(text: str) -> str:
    """One OpenSSH public key line (`ssh-ed25519 AAAA... comment`), stripped."""
    key = text.strip()
    loc = ("body", "ssh_public_key")
    if not key:
        raise UnprocessableError("ssh_public_key is empty", loc=loc)
    if len(key) > MAX_SSH_KEY_CHARS or "\n" in key or "\r" in key:
        raise UnprocessableError("ssh_public_key must be a single OpenSSH public key line", loc=loc)
    try:
        load_ssh_public_key(key.encode())
    except (ValueError, UnsupportedAlgorithm, TypeError):
        raise UnprocessableError(
            "ssh_public_key is not a valid OpenSSH public key (expected e.g. 'ssh-ed25519 AAAA... you@host')", loc=loc
        ) from None
    return key


def check_cloud_init(text: str | None) -> str | None:
    if text is None:
        return None
    loc = ("body", "cloud_init")
    if len(text.encode()) > MAX_CLOUD_INIT_BYTES:
        raise UnprocessableError(f"cloud_init is larger than {MAX_CLOUD_INIT_BYTES} bytes (64 KB)", loc=loc)
    if not text.startswith(CLOUD_INIT_PREFIXES):
        raise UnprocessableError("cloud_init must start with '#cloud-config' or '#!/' (a script)", loc=loc)
    return text


def accepted_cloud_init(vendor: str) -> tuple[str, ...]:
    """The cloud_init forms a vendor runs (its VendorSpec; an id no adapter declares: both). Its
    adapter refuses the rest at create time, so a procurement is refused at once, with a clear 422."""
    forms = cloud_init_forms(vendor)
    return CLOUD_INIT_PREFIXES if forms is None else forms


def check_cloud_init_for_vendor(vendor: str, cloud_init: str | None) -> None:
    if cloud_init is None:
        return
    accepted = accepted_cloud_init(vendor)
    if cloud_init.startswith(accepted):
        return
    loc = ("body", "cloud_init")
    if not accepted:
        raise UnprocessableError(f"vendor {vendor} takes no cloud_init (only the SSH key); leave it out", loc=loc)
    raise UnprocessableError(
        f"vendor {vendor} takes cloud_init only as {' or '.join(repr(p) for p in accepted)}", loc=loc
    )


def check_resource_name(name: str | None, *, loc: tuple[str, ...] = ("body", "resource_name")) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if not 1 <= len(name) <= 200 or not name.isprintable():
        raise UnprocessableError(f"{loc[-1]} must be 1-200 printable characters", loc=loc)
    return name


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise UnprocessableError(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters",
            loc=("header", "Idempotency-Key"),
        )
    return key


def request_hash(body: dict[str, Any]) -> str:
    """Fingerprint of a request body, to tell a retry from a different request with the same key."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


# ----- procure ----------------------------------------------------------------------------------
async def procure(
    db: Database,
    catalog: OfferCatalog,
    principal: Principal,
    *,
    offer_id: UUID | None,
    spec: OffersRequest | None,
    ssh_public_key: str,
    cloud_init: str | None,
    resource_name: str | None,
    idempotency_key: str | None,
    body: dict[str, Any],
    auto_delete: dict[str, Any] | None = None,
    wait_for_capacity: bool = False,
    cluster_name: str | None = None,
) -> ProcureOutcome:
    """Procure one offer, or (with `spec`) the cheapest offer matching a get_offers document.
    `auto_delete`: {delete_at | ttl_seconds, spend_limit} (services/budgets.py). A spec that
    matches no offer now is refused (409, or 503 while a vendor's catalog cannot be read) unless
    `wait_for_capacity`: then the engine keeps looking until the provisioning timeout."""
    if (offer_id is None) == (spec is None):
        raise UnprocessableError("give exactly one of offer_id or spec", loc=("body",))
    # Also reached from the console's form, which has no request model to check the text.
    require_text({"ssh_public_key": ssh_public_key, "cloud_init": cloud_init, "resource_name": resource_name}, loc=("body",))
    limits = auto_delete_values(auto_delete, utcnow()) if auto_delete else None
    key = check_ssh_public_key(ssh_public_key)
    init = check_cloud_init(cloud_init)
    name = check_resource_name(resource_name)
    cluster = check_resource_name(cluster_name, loc=("body", "cluster_name"))
    idem = check_idempotency_key(idempotency_key)
    fingerprint = request_hash(body)
    if idem is not None:
        replay = await _replay(db, principal, idem, fingerprint)
        if replay is not None:
            return replay
    if spec is not None and not wait_for_capacity:
        await check_capacity(catalog, query_from_request(spec, loc=("body", "spec")))
    try:
        async with db.transaction() as session:
            if offer_id is not None:
                response = await _procure_offer(session, principal, offer_id, key, init, name, idem, fingerprint, limits, cluster)
            else:
                assert spec is not None
                as_cluster = catalog.wants_clusters(query_from_request(spec, loc=("body", "spec")))
                response = await _procure_spec(
                    session, principal, spec, key, init, name, idem, fingerprint, limits, cluster if as_cluster else None, as_cluster
                )
    except (ServiceError, IntegrityError) as exc:
        # A concurrent request with the same key may have won: answer as its replay.
        if idem is not None:
            replay = await _replay(db, principal, idem, fingerprint)
            if replay is not None:
                return replay
        if isinstance(exc, IntegrityError):
            raise ConflictError("the request conflicted with a concurrent one; retry it") from None
        raise
    if offer_id is not None:
        catalog.discard(offer_id)
    hint()
    return ProcureOutcome(response, replayed=False)


async def _replay(db: Database, principal: Principal, key: str, fingerprint: str) -> ProcureOutcome | None:
    async with db.session() as session:
        earlier = (
            await session.execute(
                select(Procurement).where(
                    Procurement.tenant_id == principal.tenant_id, Procurement.idempotency_key == key
                )
            )
        ).scalar_one_or_none()
    if earlier is None:
        return None
    if earlier.request_hash != fingerprint:
        raise UnprocessableError(
            f"Idempotency-Key {key!r} was already used with a different request body; use a new key for a new request",
            loc=("header", "Idempotency-Key"),
        )
    return ProcureOutcome(dict(earlier.response or {}), replayed=True)


async def _procure_offer(
    session: AsyncSession,
    principal: Principal,
    offer_id: UUID,
    ssh_public_key: str,
    cloud_init: str | None,
    name: str | None,
    idempotency_key: str | None,
    fingerprint: str,
    limits: AutoDeleteValues | None = None,
    cluster_name: str | None = None,
) -> dict[str, Any]:
    now = utcnow()
    # Compare-and-set first: of two concurrent procures of one offer exactly one wins.
    taken = await claim_offer(session, offer_id, principal.tenant_id, now, unexpired=True)
    row = await session.get(OfferRow, offer_id)
    if not taken:
        if row is None:
            raise NotFoundError(f"offer {offer_id} not found")
        if row.status == "available":
            raise GoneError(f"offer {offer_id} expired at {row.expires_at.isoformat()}; search again for a fresh offer")
        raise ConflictError(f"offer {offer_id} was already procured")
    assert row is not None
    offer = offer_from_dict(row.data)
    check_cloud_init_for_vendor(offer.vendor, cloud_init)  # raising rolls the offer back to available
    procurement = Procurement(
        id=uuid4(),
        tenant_id=principal.tenant_id,
        offer_id=offer_id,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        status=STATUS_IN_PROGRESS,
        created_at=now,
        procured_at=now,
    )
    resource = new_resource(principal.tenant_id, procurement.id, ssh_public_key, cloud_init, name, now)
    fill_from_offer(resource, offer_id, offer)
    if offer.node_count > 1:
        resource.name = clusters.cluster_name(resource.id, cluster_name, name)
        reason = f"procured cluster offer {offer_id} ({offer.vendor}, {offer.node_count} nodes)"
        return await _write(session, procurement, resource, reason, limits, cluster_offer=offer)
    return await _write(session, procurement, resource, f"procured offer {offer_id} ({offer.vendor})", limits)


async def _procure_spec(
    session: AsyncSession,
    principal: Principal,
    spec: OffersRequest,
    ssh_public_key: str,
    cloud_init: str | None,
    name: str | None,
    idempotency_key: str | None,
    fingerprint: str,
    limits: AutoDeleteValues | None = None,
    cluster_name: str | None = None,
    as_cluster: bool = False,
) -> dict[str, Any]:
    """By spec: the resource waits for the engine to pick the offer. A spec asking for a cluster
    (more GPUs than any single node has, a node_count, InfiniBand) makes a cluster resource whose
    nodes the engine writes with the placement it picks (engine/pipelines/cluster.py)."""
    query = query_from_request(spec, loc=("body", "spec"))
    now = utcnow()
    procurement = spec_procurement(
        principal.tenant_id, normalized_document(spec, query), now, idempotency_key=idempotency_key, fingerprint=fingerprint
    )
    resource = new_resource(principal.tenant_id, procurement.id, ssh_public_key, cloud_init, name, now)
    fill_from_query(resource, query)
    if as_cluster:
        resource.resource_type = clusters.CLUSTER
        resource.name = clusters.cluster_name(resource.id, cluster_name, name)
        reason = "cluster procurement by spec: the engine picks the cheapest placement, then creates every node"
        return await _write(session, procurement, resource, reason, limits)
    return await _write(session, procurement, resource, "procurement by spec: the engine picks the cheapest matching offer", limits)


async def procure_for_alert(session: AsyncSession, alert: PriceAlert, firing_id: UUID) -> UUID:
    """A buy-below order's procurement (domain/price_alerts.AlertProcurer), in the firing's own
    transaction: by spec, bounded by the alert's threshold (it never pays more), budget checked
    (BudgetExceeded is raised before anything is written). Returns the pending resource's id."""
    fields = dict(alert.procure or {})
    document = {**alert.spec, "compute": {**alert.spec["compute"], "max_price_per_gpu_hour": alert.threshold}}
    spec = OffersRequest.model_validate(document)
    now = utcnow()
    auto_delete = fields.get("auto_delete")
    limits = auto_delete_values(auto_delete, now) if auto_delete else None
    principal = Principal(alert.tenant_id, "", alert.id, "price alert", False)
    name = fields.get("resource_name") or (f"{alert.name} #{alert.procured_count + 1}" if alert.name else None)
    response = await _procure_spec(
        session, principal, spec, fields["ssh_public_key"], fields.get("cloud_init"), check_resource_name(name),
        f"price-alert:{firing_id}", request_hash(document), limits,
    )
    return UUID(response["resource_ids"][0])


async def _write(
    session: AsyncSession,
    procurement: Procurement,
    resource: Resource,
    reason: str,
    limits: AutoDeleteValues | None = None,
    *,
    cluster_offer: Offer | None = None,
) -> dict[str, Any]:
    # The resource carries its auto-delete limits from the start (docs/cost.md; a cluster's apply to
    # the cluster).
    if limits is not None:
        apply_auto_delete(resource, limits)
    return await write_intent(session, procurement, resource, reason, cluster_offer=cluster_offer)


# ----- status of a procured offer ---------------------------------------------------------------
async def offer_status(db: Database, principal: Principal, offer_id: UUID) -> OfferStatus:
    """The caller's procurement of an offer, derived from its resources: the offer row, the
    tenant's first procurement of it and their resources in one statement (services/reads.py).

    An offer nobody procured answers `pending` with no instances; an offer another tenant
    procured is 404 for everyone else (never 403), like an unknown one.
    """
    rows = await db.read(reads.offer_status(principal.tenant_id, offer_id))
    first = rows[0]
    offer: _OfferFacts | None = None
    if first.offer_status is not None:
        fetched = first.offer_fetched_at
        offer = _OfferFacts(
            effective_status(first.offer_status, first.offer_expires_at, utcnow()),
            datetime.fromisoformat(fetched) if isinstance(fetched, str) else None,
        )
    procurement = (
        _ProcurementFacts(first.procurement_failure_reason, first.procurement_created_at, first.procurement_procured_at)
        if first.procurement_id is not None
        else None
    )
    resources = [row for row in rows if row.id is not None]
    if procurement is None and not resources:
        if offer is None or offer.status not in ("available", "expired"):
            raise NotFoundError(f"offer {offer_id} not found")
        return OfferStatus(offer_id, offer.status, offer.fetched_at, ProcurementStatus.PENDING.value, [], "0/0 instances running", None, None)
    return _status_view(offer_id, offer, procurement, resources)


@dataclass(frozen=True, slots=True)
class _OfferFacts:
    status: str  # effective: an available offer past its expiry is expired
    fetched_at: datetime | None


@dataclass(frozen=True, slots=True)
class _ProcurementFacts:
    failure_reason: str | None
    created_at: datetime
    procured_at: datetime | None


_ENDING = frozenset({ResourceStatus.DELETING, ResourceStatus.DELETED, ResourceStatus.TERMINATED})


def _status_view(
    offer_id: UUID, offer: _OfferFacts | None, procurement: _ProcurementFacts | None, resources: list[Any]
) -> OfferStatus:
    # A cluster's procurement is its cluster resource's (all or nothing); its nodes are the instances.
    clusters = [r for r in resources if r.resource_type == "cluster"]
    instances = [r for r in resources if r.resource_type != "cluster"]
    judged = clusters or instances
    statuses = [ResourceStatus(r.status) for r in judged]
    # A resource that ended (deleted, terminated) or is being deleted without ever running was
    # never delivered: for the procurement it counts as failed, not ready.
    delivered = [
        ResourceStatus.FAILED if s in _ENDING and r.running_since is None else s
        for s, r in zip(statuses, judged, strict=True)
    ]
    derived = procurement_status(delivered, any(r.vendor_instance_id for r in instances))
    running = sum(1 for r in instances if r.status == ResourceStatus.RUNNING)
    failures = [
        r.status_message or f"the resource was {r.status} before it ran"
        for r, s in zip(judged, delivered, strict=True)
        if s == ResourceStatus.FAILED and (r.status_message or r.status != ResourceStatus.FAILED)
    ]
    failure = (procurement.failure_reason if procurement else None) or ("; ".join(failures) if failures else None)
    created = offer.fetched_at if offer is not None else (procurement.created_at if procurement else None)
    return OfferStatus(
        offer_id=offer_id,
        status=offer.status if offer is not None else "procured",
        created_at=created,
        procurement_status=derived.value,
        resources=resources,
        progress=f"{running}/{len(instances)} instances running",
        failure_reason=failure if derived == ProcurementStatus.FAILED or failures else None,
        procured_at=procurement.procured_at if procurement else None,
    )
