"""Vast's HTTP routes over a `VastSandbox`: offers, asks, instances (v0 and v1), SSH keys and the
account, each at the paths (with and without the trailing slash) and answers `console.vast.ai` has."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from gpusupply.sandbox.common import (
    CREATE_FAULTS,
    DELETE_FAULTS,
    READ_FAULTS,
    BodyNotJson,
    Phase,
    read_json,
)
from gpusupply.sandbox.inventory import SIM_GPUS
from gpusupply.sandbox.vast.app import API_V0, API_V1, VastSandbox, parse_int, vast_error, vast_json
from gpusupply.sandbox.vast.bodies import MAX_LABEL_LENGTH, parse_create_body


def add_routes(sandbox: VastSandbox, app: FastAPI) -> FastAPI:
    """Serve Vast's routes on `app` (the sandbox's app, with the admin routes), from `sandbox`."""
    app.router.redirect_slashes = False

    def route(path: str, methods: list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Serve `path` with and without its trailing slash: clients use both."""
        bare = path.rstrip("/")

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            for variant in (bare, bare + "/"):
                app.add_api_route(variant, handler, methods=methods, include_in_schema=False)
            return handler

        return register

    async def body_of(request: Request) -> tuple[Any, bool]:
        """(parsed JSON body, ok). An empty body is {} (the CLI sends {} on PUT/DELETE)."""
        try:
            return await read_json(request, empty={}), True
        except BodyNotJson:
            return None, False

    # ----- offers ---------------------------------------------------------------------------
    @route(f"{API_V0}/bundles/", ["POST"])
    async def search_offers(request: Request) -> Response:
        async def read() -> Any:
            body, ok = await body_of(request)
            if not ok:
                raise ValueError("invalid json")
            return body

        return await sandbox._search_route(request, read)

    @route(f"{API_V0}/bundles/", ["GET"])
    async def search_offers_legacy(request: Request) -> Response:
        async def read() -> Any:
            return json.loads(request.query_params.get("q") or "{}")

        return await sandbox._search_route(request, read)

    @route(f"{API_V0}/search/asks/", ["PUT"])
    async def search_asks(request: Request) -> Response:
        async def read() -> Any:
            body, ok = await body_of(request)
            if not ok:
                raise ValueError("invalid json")
            return body

        return await sandbox._search_route(request, read, select_cols=True)

    @route(f"{API_V0}/gpu_names/unique/", ["GET"])
    async def gpu_names(request: Request) -> Response:
        call = await sandbox.open_call(request, "gpu_names", anonymous="allow")
        if isinstance(call, Response):
            return call
        return vast_json({"gpu_names": sorted({g.vast_name for g in SIM_GPUS})})

    # ----- create ------------------------------------------------------------------------------
    @route(API_V0 + "/asks/{ask_id}/", ["PUT"])
    async def accept_ask(ask_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "create", CREATE_FAULTS)
        if isinstance(call, Response):
            return call
        body, ok = await body_of(request)
        ask = parse_int(ask_id)
        if ask is None:
            return vast_error(400, "invalid_args", "error 400/3467: Invalid args: 'id' is required and must be a valid offer ID", ask_id=None)
        if not ok:
            return vast_error(400, "invalid_args", "error 400/3467: Invalid args: Invalid json body", ask_id=ask)
        spec = parse_create_body(body)
        if isinstance(spec, tuple):
            return vast_error(400, spec[0], spec[1], ask_id=ask)
        index = sandbox.offers.index_of(ask)
        if index is None or not sandbox.offers.columns["base_rentable"][index]:
            return vast_error(404, "invalid_args", f"error 404/3603: no_such_ask Instance type by id {ask} is not available.", ask_id=ask)
        if not sandbox.rentable_mask()[index]:
            if spec.cancel_unavail:
                return vast_error(410, "no_such_ask", f"error 410/3907: no_such_ask Instance type {ask} is no longer available.", ask_id=ask)
            return vast_error(404, "invalid_args", f"error 404/3603: no_such_ask Instance type by id {ask} is not available.", ask_id=ask)
        table = sandbox.offers
        offer = table.render(np.array([index]), table.priced("on-demand", spec.disk), sandbox.rentable_mask(), "on-demand", sandbox.now())[0]
        if offer["verification"] == "deverified":
            return vast_error(403, "invalid_args", f"error 403/3586: Offer {ask} is not your own. Hosts can only rent their own machines.", ask_id=ask)
        if spec.price is not None and spec.price < offer["min_bid"]:
            return vast_error(400, "invalid_price", f"error 400/3467: Invalid price: bid {spec.price:g} $/hr is below the minimum bid {offer['min_bid']:g} $/hr for offer {ask}", ask_id=ask)
        if spec.disk > offer["disk_space"]:
            return vast_error(400, "invalid_args", f"error 400/3467: Invalid args: 'disk' {spec.disk:g} GB exceeds the {offer['disk_space']:g} GB offer {ask} has", ask_id=ask)
        account = sandbox.account(call.account)
        if spec.vm and not offer["vms_enabled"]:
            return vast_error(400, "invalid_args", f"error 400/3467: Invalid args: offer {ask} does not support VMs", ask_id=ask)
        if spec.vm and not account.ssh_keys:
            return vast_error(400, "no_ssh_key_for_vm", "error 400/3467: A VM instance needs an SSH key on your account; add one with POST /api/v0/ssh/", ask_id=ask)
        if account.credit <= 0:
            return vast_error(400, "missing_billing", "Your account has no credit; add credit to rent instances", ask_id=ask)
        inst = sandbox._commit(call.account, ask, offer, spec)
        if call.fault == "lost":
            return await sandbox.lost_response()
        return vast_json({"success": True, "new_contract": int(inst.id), "instance_api_key": inst.data["instance_api_key"]})

    # ----- instance lists -------------------------------------------------------------------
    @route(f"{API_V1}/instances/", ["GET"])
    async def list_instances_v1(request: Request) -> Response:
        call = await sandbox.open_call(request, "list", ("malformed",))
        if isinstance(call, Response):
            return call
        page = sandbox.rows_page(call.account, dict(request.query_params))
        if isinstance(page, Response):
            return page
        if call.fault == "malformed":
            return sandbox.malformed(page, "instances")
        return vast_json(page)

    @route(f"{API_V0}/instances/", ["GET"])
    async def list_instances_v0(request: Request) -> Response:
        call = await sandbox.open_call(request, "list", ("malformed",))
        if isinstance(call, Response):
            return call
        rows = sorted((sandbox.instance_row(i) for i in sandbox.account_instances(call.account)), key=lambda r: r["id"])
        body = {"instances_found": len(rows), "instances": rows}
        if call.fault == "malformed":
            return sandbox.malformed(body, "instances")
        return vast_json(body)

    @route(f"{API_V0}/instances/filters/", ["GET"])
    async def instance_filters(request: Request) -> Response:
        call = await sandbox.open_call(request, "filters")
        if isinstance(call, Response):
            return call
        combos = sorted(
            {(r["actual_status"] or "", r["verification"] or "", r["gpu_name"] or "")
             for r in (sandbox.instance_row(i) for i in sandbox.account_instances(call.account))}
        )
        return vast_json({"filters": [{"actual_status": a or None, "verification": v or None, "gpu_name": g or None} for a, v, g in combos]})

    # ----- one instance -----------------------------------------------------------------------
    @route(API_V0 + "/instances/reboot/{instance_id}/", ["PUT"])
    async def reboot_instance(instance_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "manage")
        if isinstance(call, Response):
            return call
        inst = sandbox._own(call.account, instance_id)
        if isinstance(inst, Response):
            return inst
        phase = inst.phase(sandbox.now(), sandbox.faults)
        if phase in (Phase.STOPPED, Phase.STOPPING):
            return vast_error(400, "invalid_args", f"Instance {instance_id} is stopped; start it instead of rebooting")
        if phase == Phase.RUNNING:
            inst.reboot_requested_at = sandbox.now()
        return vast_json({"success": True, "msg": f"Rebooting instance {instance_id}"})

    @route(API_V0 + "/instances/{instance_id}/", ["GET"])
    async def show_instance(instance_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "get", READ_FAULTS, instance_id=instance_id)
        if isinstance(call, Response):
            return call
        if parse_int(instance_id) is None:
            return vast_error(400, "invalid_args", "invalid instance_id")
        inst = None if call.fault == "phantom_404" else sandbox.live_instance(call.account, instance_id)
        return vast_json({"instances": sandbox.instance_row(inst) if inst is not None else None})

    @route(API_V0 + "/instances/{instance_id}/", ["PUT"])
    async def manage_instance(instance_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "manage")
        if isinstance(call, Response):
            return call
        body, ok = await body_of(request)
        if not ok or not isinstance(body, dict):
            return vast_error(400, "invalid_args", "Invalid json body")
        inst = sandbox._own(call.account, instance_id)
        if isinstance(inst, Response):
            return inst
        state, label = body.get("state"), body.get("label", ...)
        if state is None and label is ...:
            return vast_error(400, "invalid_args", "Nothing to change: send 'state' (running|stopped) or 'label'")
        if state is not None and state not in ("running", "stopped"):
            return vast_error(400, "invalid_args", f"'state' must be running or stopped (got {state!r})")
        if label is not ... and label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_LENGTH):
            return vast_error(400, "label_too_long", f"Label must be a string of at most {MAX_LABEL_LENGTH} characters")
        if state == "running" and sandbox.account(call.account).credit <= 0:
            return vast_error(400, "missing_billing", "Your account has no credit; add credit to start instances")
        now = sandbox.now()
        if state == "stopped" and inst.stopped_at is None:
            inst.phase(now, sandbox.faults)  # settles running_since before the stop
            inst.stopped_at = now
        elif state == "running" and inst.stopped_at is not None:
            inst.stopped_at = None
            inst.start_requested_at = now
            if now >= inst.created_at + inst.ready_after:
                inst.running_since = now
        if label is not ...:
            inst.data["label"] = label
            inst.marker = label
        return vast_json({"success": True})

    @route(API_V0 + "/instances/{instance_id}/", ["DELETE"])
    async def destroy_instance(instance_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "delete", DELETE_FAULTS, instance_id=instance_id)
        if isinstance(call, Response):
            return call
        if parse_int(instance_id) is None:
            return vast_error(400, "invalid_args", "invalid instance_id")
        inst = sandbox.live_instance(call.account, instance_id)
        if inst is None:
            return vast_error(404, "not_found", "Instance not found")
        if call.fault != "ignored_delete":
            sandbox.record_delete(inst)
        return vast_json({"success": True, "msg": f"Instance {instance_id} destroyed."})

    # ----- SSH keys ----------------------------------------------------------------------------
    @route(API_V0 + "/instances/{instance_id}/ssh/", ["POST"])
    async def attach_ssh(instance_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "ssh")
        if isinstance(call, Response):
            return call
        inst = sandbox._own(call.account, instance_id)
        if isinstance(inst, Response):
            return inst
        key = await sandbox._ssh_key_from(request)
        if isinstance(key, Response):
            return key
        if not any(k["key"] == key for k in inst.data["ssh_keys"]):
            inst.data["ssh_keys"].append({"id": sandbox._key_id_for(call.account, key), "key": key, "created_at": sandbox.now()})
        return vast_json({"success": True, "msg": "SSH key attached successfully"})

    @route(API_V0 + "/instances/{instance_id}/ssh/{key_id}/", ["DELETE"])
    async def detach_ssh(instance_id: str, key_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "ssh")
        if isinstance(call, Response):
            return call
        inst = sandbox._own(call.account, instance_id)
        if isinstance(inst, Response):
            return inst
        kept = [k for k in inst.data["ssh_keys"] if str(k["id"]) != key_id]
        if len(kept) == len(inst.data["ssh_keys"]):
            return vast_error(400, "no_ssh_key", "No ssh key provided")
        inst.data["ssh_keys"] = kept
        return vast_json({"success": True, "msg": "SSH key detached successfully"})

    @route(f"{API_V0}/ssh/", ["GET"])
    async def list_ssh_keys(request: Request) -> Response:
        call = await sandbox.open_call(request, "ssh_list")
        if isinstance(call, Response):
            return call
        account = sandbox.account(call.account)
        return vast_json([sandbox._key_view(account, k, "key") for k in account.ssh_keys])

    @route(f"{API_V0}/ssh/", ["POST"])
    async def create_ssh_key(request: Request) -> Response:
        call = await sandbox.open_call(request, "ssh")
        if isinstance(call, Response):
            return call
        key = await sandbox._ssh_key_from(request)
        if isinstance(key, Response):
            return key
        account = sandbox.account(call.account)
        entry = next((k for k in account.ssh_keys if k["key"] == key), None)
        if entry is None:
            entry = {"id": sandbox._new_key_id(), "key": key, "created_at": sandbox.now()}
            account.ssh_keys.append(entry)
            # "will be added to all your current instances automatically"
            for inst in sandbox.account_instances(call.account):
                if not any(k["key"] == key for k in inst.data["ssh_keys"]):
                    inst.data["ssh_keys"].append(dict(entry))
        return vast_json({"success": True, "key": sandbox._key_view(account, entry, "public_key")})

    @route(API_V0 + "/ssh/{key_id}/", ["PUT"])
    async def update_ssh_key(key_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "ssh")
        if isinstance(call, Response):
            return call
        account = sandbox.account(call.account)
        entry = next((k for k in account.ssh_keys if str(k["id"]) == key_id), None)
        if entry is None:
            return vast_error(400, "no_ssh_key", "No ssh key provided")
        key = await sandbox._ssh_key_from(request)
        if isinstance(key, Response):
            return key
        entry["key"] = key
        return vast_json({"success": True, "key": sandbox._key_view(account, entry, "public_key")})

    @route(API_V0 + "/ssh/{key_id}/", ["DELETE"])
    async def delete_ssh_key(key_id: str, request: Request) -> Response:
        call = await sandbox.open_call(request, "ssh")
        if isinstance(call, Response):
            return call
        account = sandbox.account(call.account)
        kept = [k for k in account.ssh_keys if str(k["id"]) != key_id]
        if len(kept) == len(account.ssh_keys):
            return vast_error(400, "no_ssh_key", "No ssh key provided")
        account.ssh_keys = kept
        return vast_json({"success": True})

    @route(f"{API_V0}/users/current/", ["GET"])
    async def current_user(request: Request) -> Response:
        call = await sandbox.open_call(request, "user")
        if isinstance(call, Response):
            return call
        account = sandbox.account(call.account)
        return vast_json({
            "id": account.user_id,
            "username": f"user{account.user_id}",
            "email": f"user{account.user_id}@example.com",
            "fullname": None,
            "credit": account.credit,
            "balance": 0.0,
            "has_billing": account.credit > 0,
            "ssh_key": account.ssh_keys[-1]["key"] if account.ssh_keys else None,
        })

    return app
