"""The console's fleet pages (docs/fleets.md, docs/console.md): every fleet with running of
wanted, and a page per fleet whose live part (members, wanted vs running, cool-downs, events)
is re-read every few seconds, through the same service as `GET /fleets/{id}`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gpusupply.api.deps import get_ctx
from gpusupply.core.errors import NotFoundError
from gpusupply.db.models import utcnow
from gpusupply.services import fleets
from gpusupply.services.fleets import FleetView
from gpusupply.services.resources import ssh_command
from gpusupply.web.plumbing import (
    PREFIX,
    Visitor,
    error_page,
    fragment,
    page,
    render_text,
    secured,
    signed_in,
    versioned,
)
from gpusupply.web.routes import parse_uuid

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# A fleet's status as the console shows it: (tone, what it means); tones as the resource statuses'.
FLEET_STATUS = {
    "active": ("ok", "keeping its size"),
    "degraded": ("bad", "cannot reach its size now; retrying with backoff"),
    "deleting": ("busy", "deleting its members"),
    "deleted": ("ended", "every member is gone"),
}


def _gpu(view: FleetView) -> str:
    compute = view.fleet.spec.get("compute") or {}
    spot = " spot" if compute.get("contract_type") == "spot" else ""
    return f"{compute.get('gpu_count') or 1}× {compute.get('gpu_type')}{spot}"


async def _view(request: Request, visitor: Visitor, fleet_id: str) -> FleetView:
    parsed = parse_uuid(fleet_id)
    if parsed is None:
        raise NotFoundError(f"fleet {fleet_id} not found")
    return await fleets.get_fleet(get_ctx(request).db, visitor.principal, parsed)


def _live_html(view: FleetView) -> str:
    now = utcnow()
    return render_text(
        "_fleet_live.html", view=view, fleet=view.fleet, gpu=_gpu(view), tone=FLEET_STATUS[view.fleet.status],
        cooldowns=view.cooldowns(now), ssh=lambda m: ssh_command(m.external_ip, m.ssh_host, m.ssh_port, m.ssh_user),
    )


@router.get("/fleets")
async def fleets_page(request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    views, total = await fleets.list_fleets(get_ctx(request).db, visitor.principal, limit=1000)
    rows = [(v, _gpu(v), FLEET_STATUS[v.fleet.status]) for v in views]
    return page(request, "fleets.html", visitor, nav="fleets", rows=rows, total=total)


@router.get("/fleets/{fleet_id}")
async def fleet_page(fleet_id: str, request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    try:
        view = await _view(request, visitor, fleet_id)
    except NotFoundError as exc:
        return error_page(request, visitor, 404, f"{exc.detail.capitalize()}.")
    return page(request, "fleet.html", visitor, nav="fleets", fleet=view.fleet, live_html=versioned(_live_html(view))[0])


@router.get("/fleets/{fleet_id}/live")
async def fleet_live(fleet_id: str, request: Request, visitor: Visitor = Depends(signed_in)) -> Response:
    try:
        view = await _view(request, visitor, fleet_id)
    except NotFoundError:
        return secured(Response(status_code=404))
    return fragment(request, _live_html(view))
