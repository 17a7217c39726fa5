"""The console's pages, under /console: server-rendered (Jinja2) over the same services the API
routers call. Every state-changing form is a POST carrying the session's CSRF token; htmx only
refreshes small fragments (the resources table, a resource's status and timeline) and loads the
confirmation dialog. The responses and session checks every page uses are in plumbing.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gpusupply.api.deps import ServiceContext, get_ctx
from gpusupply.core.errors import ConflictError, NotFoundError, ServiceError, Unauthorized, UnprocessableError
from gpusupply.core.gpus import families
from gpusupply.core.offers import CONTRACT_TYPES, OfferQuery
from gpusupply.core.regions import REGION_GROUPS
from gpusupply.db.models import Resource, utcnow
from gpusupply.domain import costs
from gpusupply.domain.catalog import OfferCatalog, StoredOffer
from gpusupply.services import budgets, offers, procurement, resources
from gpusupply.services.keys import Principal
from gpusupply.services.offers import parse_offer_query
from gpusupply.services.resources import ssh_command
from gpusupply.web.forms import (
    FORM_ERROR,
    PAGE_SIZE,
    PROCURE_FIELDS,
    SEARCH_FIELDS,
    SORT_KEYS,
    SearchForm,
    descending_window,
    field_errors,
    read_procure_form,
    read_search_form,
    search_link,
)
from gpusupply.web.plumbing import (
    PREFIX,
    PROCUREMENT_STARTED,
    Visitor,
    checked_form,
    error_page,
    form_text,
    fragment,
    is_htmx,
    page,
    redirect,
    render_text,
    secured,
    signed_in,
    versioned,
)
from gpusupply.web.session import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    decode_session,
    encode_session,
    new_session,
    principal_for,
    safe_return_path,
)
from gpusupply.web.views import (
    ACTION_TEXT,
    ACTIONS,
    IN_FLIGHT,
    STATUS_DISPLAY,
    ResourceView,
    money,
    resource_label,
    resource_view,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

STARTING_STATUSES = frozenset({"pending", "provisioning"})
# Removes the "Procurement started" banner once the resource is past starting (an out-of-band swap).
DROP_STARTED_BANNER = '<p id="flash-started" hx-swap-oob="delete"></p>'


# ----- sign-in -------------------------------------------------------------------------------------
async def root(request: Request) -> Response:
    """`/` is the console."""
    return secured(RedirectResponse(f"{PREFIX}/", status_code=303))


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    signed = decode_session(request.cookies.get(SESSION_COOKIE)) is not None
    return redirect(f"{PREFIX}/offers" if signed else f"{PREFIX}/sign-in")


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    next_path = safe_return_path(request.query_params.get("next"), "")
    return page(request, "sign_in.html", None, next_path=next_path, error=None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = form_text(await checked_form(request, None))
    token = form.get("api_key", "").strip()
    next_path = safe_return_path(form.get("next"), "")
    if not token:
        return page(request, "sign_in.html", None, status_code=422, next_path=next_path, error="Enter your API key.")
    session = new_session(token)
    try:
        await principal_for(get_ctx(request).db, session)
    except Unauthorized as exc:
        error = f"That API key was not accepted ({exc.detail}). Check it and try again."
        return page(request, "sign_in.html", None, status_code=401, next_path=next_path, error=error)
    response = redirect(next_path or f"{PREFIX}/offers")
    response.set_cookie(
        SESSION_COOKIE,
        encode_session(session),
        max_age=SESSION_MAX_AGE,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    await checked_form(request, visitor)
    response = redirect(f"{PREFIX}/sign-in", flash=("ok", "You are signed out."))
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


# ----- offers ------------------------------------------------------------------------------------
@dataclass(slots=True)
class OfferPage:
    offers: list[StoredOffer]
    total: int
    failed_vendors: dict[str, str]


MAX_SCAN = 100_000  # matches read at most to sort by a column other than price


def meets(offer: Any, minimums: Mapping[str, float]) -> bool:
    return all((getattr(offer, attribute) or 0.0) >= amount for attribute, amount in minimums.items())


async def find_offers(catalog: OfferCatalog, query: OfferQuery, form: SearchForm) -> OfferPage:
    """One page of matches, cheapest first, or most expensive first (read from the end of the
    cheapest-first order, so every page of either order comes from the same index). Sorting by
    another column, or minimums of memory or vCPUs, reads every match and orders it here."""
    if form.sort_key != "price" or form.minimums:
        result = await catalog.search(query, limit=MAX_SCAN, offset=0)
        chosen = [s for s in result.offers if meets(s.offer, form.minimums)]
        attribute = SORT_KEYS[form.sort_key]
        # Stable: equal values keep the cheapest-first order; unknown sizes go last either way.
        chosen.sort(key=lambda s: (getattr(s.offer, attribute) is None, (getattr(s.offer, attribute) or 0.0)
                                   * (-1 if form.descending else 1)))
        return OfferPage(chosen[form.offset : form.offset + PAGE_SIZE], len(chosen), result.failed_vendors)
    if not form.descending:
        result = await catalog.search(query, limit=PAGE_SIZE, offset=form.offset)
        return OfferPage(result.offers, result.total, result.failed_vendors)
    probe = await catalog.search(query, limit=1, offset=0)
    start, count = descending_window(probe.total, form.offset, PAGE_SIZE)
    if count == 0:
        return OfferPage([], probe.total, probe.failed_vendors)
    result = await catalog.search(query, limit=count, offset=start)
    return OfferPage(list(reversed(result.offers)), result.total, result.failed_vendors)


@router.get("/offers")
async def offers_page(request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    ctx = get_ctx(request)
    form = read_search_form(request.query_params)
    found: OfferPage | None = None
    if form.document is not None:
        try:
            _, query = parse_offer_query(form.document, loc=())
        except UnprocessableError as exc:
            form.errors.update(field_errors(exc.errors, SEARCH_FIELDS))
        else:
            found = await find_offers(ctx.catalog, query, form)
    return page(
        request,
        "offers.html",
        visitor,
        status_code=422 if form.errors else 200,
        nav="offers",
        form=form,
        found=found,
        page_size=PAGE_SIZE,
        gpu_families=families(),
        regions=REGION_GROUPS,
        contract_types=CONTRACT_TYPES,
        vendors=list(ctx.vendors.adapters),
    )


def parse_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def cloud_init_kinds(vendor: str) -> tuple[str, ...]:
    """What the vendor can run at boot (the same rule the procurement service checks)."""
    return procurement.accepted_cloud_init(vendor)


def _procure_page(
    request: Request,
    visitor: Visitor,
    stored: StoredOffer | None,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    form_id: str,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "procure.html",
        visitor,
        status_code=status_code,
        nav="offers",
        stored=stored,
        values=values,
        errors=errors,
        form_id=form_id,
        cloud_init_kinds=cloud_init_kinds(stored.offer.vendor) if stored else (),
        form_error=FORM_ERROR,
        first_invalid=next((name for name in PROCURE_FIELDS if name in errors), None),
    )


def new_form_id() -> str:
    return f"console-{uuid4().hex}"


@router.get("/offers/{offer_id}")
async def procure_page(offer_id: str, request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    parsed = parse_uuid(offer_id)
    try:
        if parsed is None:
            raise NotFoundError(f"offer {offer_id} not found")
        stored = await offers.get_offer(get_ctx(request).catalog, parsed)
    except NotFoundError:
        return error_page(request, visitor, 404, "This offer does not exist, or it expired and was cleaned up. Search again.")
    values = {"ssh_public_key": "", "resource_name": "", "cloud_init": "", "auto_delete_hours": "", "spend_limit": ""}
    return _procure_page(request, visitor, stored, values=values, errors={}, form_id=new_form_id())


@router.post("/offers/{offer_id}/procure")
async def procure(offer_id: str, request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    form = read_procure_form(form_text(await checked_form(request, visitor)))
    ctx = get_ctx(request)
    parsed = parse_uuid(offer_id)
    if parsed is None:
        return error_page(request, visitor, 404, "This offer does not exist.")
    body = {"offer_id": str(parsed), **form.values, "via": "console"}
    if form.errors:
        return _procure_page(request, visitor, await ctx.catalog.get(parsed), values=form.values, errors=form.errors,
                             form_id=form.form_id or new_form_id(), status_code=422)
    try:
        outcome = await procurement.procure(
            ctx.db,
            ctx.catalog,
            visitor.principal,
            offer_id=parsed,
            spec=None,
            ssh_public_key=form.ssh_public_key,
            cloud_init=form.cloud_init,
            resource_name=form.resource_name,
            idempotency_key=form.form_id,
            body=body,
            auto_delete=form.auto_delete,
        )
    except ServiceError as exc:
        if isinstance(exc, UnprocessableError):
            errors = field_errors(exc.errors, PROCURE_FIELDS)
        else:
            errors = {FORM_ERROR: exc.detail}
        stored = await ctx.catalog.get(parsed)
        return _procure_page(
            request,
            visitor,
            stored,
            values=form.values,
            errors=errors,
            form_id=form.form_id or new_form_id(),
            status_code=exc.status_code,
        )
    resource_id = outcome.response["resource_ids"][0]
    return redirect(f"{PREFIX}/resources/{resource_id}", flash=("ok", PROCUREMENT_STARTED))


# ----- resources ---------------------------------------------------------------------------------
def _views(ctx: ServiceContext, rows: list[Resource], cost: Mapping[UUID, float]) -> list[ResourceView]:
    now = utcnow()
    views = []
    for resource in rows:
        adapter = ctx.vendors.adapters.get(resource.vendor) if resource.vendor else None
        views.append(
            resource_view(
                resource,
                adapter.capabilities if adapter else None,
                now,
                address=ssh_command(resource.external_ip, resource.ssh_host, resource.ssh_port, resource.ssh_user),
                cost_so_far=cost.get(resource.id),
            )
        )
    return views


@dataclass(slots=True)
class ResourceListing:
    views: list[ResourceView]
    total: int
    page: int
    status: str
    error: str | None

    def link(self, **changes: Any) -> str:
        return search_link({"status": self.status, "page": str(self.page)}, **changes)


async def list_page(ctx: ServiceContext, principal: Principal, params: Any) -> ResourceListing:
    status = (params.get("status") or "").strip()
    page_text = params.get("page") or "1"
    page_number = int(page_text) if page_text.isdigit() and 0 < int(page_text) < 10_000 else 1
    error = None
    try:
        rows, total = await resources.list_resources(
            ctx.db, principal, status=status or None, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE
        )
    except UnprocessableError as exc:
        error, status = exc.detail, ""
        rows, total = await resources.list_resources(ctx.db, principal, limit=PAGE_SIZE)
    cost = await costs.costs_so_far(ctx.db, rows)
    return ResourceListing(_views(ctx, rows, cost), total, page_number, status, error)


@router.get("/resources")
async def resources_page(request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    ctx = get_ctx(request)
    listing = await list_page(ctx, visitor.principal, request.query_params)
    rows_html = render_text("_resource_rows.html", listing=listing, here=_list_path(listing))
    return page(
        request,
        "resources.html",
        visitor,
        budget=await budgets.get_budget(ctx.db, visitor.principal),
        status_code=422 if listing.error else 200,
        nav="resources",
        listing=listing,
        rows_html=versioned(rows_html)[0],
        statuses=list(STATUS_DISPLAY),
        page_size=PAGE_SIZE,
    )


def _list_path(listing: ResourceListing) -> str:
    return f"{PREFIX}/resources{listing.link(page=listing.page if listing.page > 1 else None)}".rstrip("?")


@router.get("/resources/rows")
async def resource_rows(request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    listing = await list_page(get_ctx(request), visitor.principal, request.query_params)
    rows_html = render_text("_resource_rows.html", listing=listing, here=_list_path(listing))
    return fragment(request, rows_html)


async def _resource(ctx: ServiceContext, visitor: Visitor, resource_id: str) -> Resource:
    parsed = parse_uuid(resource_id)
    if parsed is None:
        raise NotFoundError(f"resource {resource_id} not found")
    return await resources.get_resource(
        ctx.db, ctx.refresh_resource, visitor.principal, parsed, refresh_timeout=ctx.settings.vendor_timeout + 5
    )


async def _live_html(ctx: ServiceContext, visitor: Visitor, resource: Resource) -> str:
    events, total = await resources.list_events(ctx.db, visitor.principal, resource.id, limit=500)
    view = _views(ctx, [resource], await costs.costs_so_far(ctx.db, [resource]))[0]
    nodes: list[ResourceView] = []
    if resource.resource_type == "cluster":  # the cluster page lists its nodes with their SSH commands
        rows = await resources.cluster_nodes(ctx.db, visitor.principal, resource.id)
        nodes = _views(ctx, rows, await costs.costs_so_far(ctx.db, rows))
        live = [row.price_per_hour or 0.0 for row in rows if row.status not in ("deleted", "failed", "terminated")]
        view = replace(view, price=money(sum(live), per="h"))
    links = await resources.linked_resources(ctx.db, visitor.principal, resource) if resource.cluster_id else None
    if links and links.links and links.links[0].status not in ("deleted", "failed", "terminated"):
        view = replace(view, actions=[a for a in view.actions if a != "delete"])  # deleted with its cluster
    return render_text(
        "_resource_live.html",
        view=view,
        resource=resource,
        nodes=nodes,
        member_of=links.links[0] if links and links.links else None,
        events=events,
        events_total=total,
        here=f"{PREFIX}/resources/{resource.id}",
    )


@router.get("/resources/{resource_id}")
async def resource_page(resource_id: str, request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    ctx = get_ctx(request)
    try:
        resource = await _resource(ctx, visitor, resource_id)
    except NotFoundError as exc:
        return error_page(request, visitor, 404, f"{exc.detail.capitalize()}.")
    live_html = await _live_html(ctx, visitor, resource)
    return page(
        request,
        "resource.html",
        visitor,
        nav="resources",
        resource=resource,
        label=resource_label(resource.name, resource.id),
        live_html=versioned(live_html)[0],
        stale_flash=None if resource.status in STARTING_STATUSES else PROCUREMENT_STARTED,
    )


@router.get("/resources/{resource_id}/live")
async def resource_live(resource_id: str, request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    ctx = get_ctx(request)
    try:
        resource = await _resource(ctx, visitor, resource_id)
    except NotFoundError:
        return secured(Response(status_code=404))
    view_label = resource_label(resource.name, resource.id)
    announcement = render_text("_announce.html", text=f"{view_label} is {resource.status}.")
    if resource.status not in STARTING_STATUSES:
        announcement += DROP_STARTED_BANNER
    return fragment(request, await _live_html(ctx, visitor, resource), extra=announcement)


@router.get("/resources/{resource_id}/confirm/{action}")
async def confirm_action(
    resource_id: str, action: str, request: Request, visitor: Visitor = Depends(signed_in)
) -> Response:
    """The confirmation step: a dialog's content for htmx, a whole page without JavaScript."""
    ctx = get_ctx(request)
    return_to = safe_return_path(request.query_params.get("return_to"), f"{PREFIX}/resources")
    in_dialog = is_htmx(request)
    context: dict[str, Any] = {"action": action, "return_to": return_to, "in_dialog": in_dialog, "error": None}
    try:
        if action not in ACTIONS:
            raise NotFoundError(f"unknown action {action!r}")
        resource = await _resource(ctx, visitor, resource_id)
        label = resource_label(resource.name, resource.id)
        if action not in _views(ctx, [resource], {})[0].actions:
            raise ConflictError(f"{label} is {resource.status}: {action} is not possible now")
        context.update(resource=resource, label=label, text=ACTION_TEXT[action])
        context["offer_force"] = action == "delete" and resource.status in IN_FLIGHT
    except ServiceError as exc:
        context.update(resource=None, label="", text=None, offer_force=False, error=exc.detail)
        if not in_dialog:
            return error_page(request, visitor, exc.status_code, f"{exc.detail.capitalize()}.")
    if in_dialog:
        # 200 even for an error: htmx shows it in the dialog instead of dropping it.
        html = render_text("_confirm.html", csrf_token=visitor.session.csrf_token, **context)
        return secured(HTMLResponse(html))
    return page(request, "confirm.html", visitor, nav="resources", **context)


DONE_MESSAGES = {
    "delete": "Deleting {label}: it shows as deleted once the vendor confirms the instance is gone.",
    "stop": "Stopping {label}.",
    "start": "Starting {label}.",
    "reboot": "Rebooting {label}.",
}


@router.post("/resources/{resource_id}/{action}")
async def run_action(resource_id: str, action: str, request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    form = form_text(await checked_form(request, visitor))
    ctx = get_ctx(request)
    return_to = safe_return_path(form.get("return_to"), f"{PREFIX}/resources")
    parsed = parse_uuid(resource_id)
    if action not in ACTIONS or parsed is None:
        return error_page(request, visitor, 404, "There is no such resource or action.")
    try:
        if action == "delete":
            resource = await resources.delete_resource(ctx.db, visitor.principal, parsed, force=form.get("force") == "yes")
        else:
            resource = await resources.request_action(ctx.db, ctx.vendors, visitor.principal, parsed, action)
    except ServiceError as exc:
        return redirect(return_to, flash=("error", f"Not done: {exc.detail}."))
    label = resource_label(resource.name, resource.id)
    return redirect(return_to, flash=("ok", DONE_MESSAGES[action].format(label=label)))
