"""The console's fleet pages over HTTP (no browser): the list, a fleet's page with its members,
wanted vs running and events, the live fragment, and 404s for unknown or other tenants' fleets."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.helpers import wait_for
from tests.conftest import SSH_KEY
from tests.web.helpers import console_client, sign_in

FAST_ENGINE = {"engine_poll_seconds": 0.1, "provisioning_poll_seconds": 0.2, "refresh_interval_seconds": 1.0}


@pytest.mark.parametrize("settings_overrides", [FAST_ENGINE])
@pytest.mark.parametrize("service_engine", [True])
async def test_fleet_list_and_page_show_members_and_events(service: Any) -> None:
    body = {"name": "web-fleet", "spec": {"compute": {"gpu_type": "RTX4090"}}, "size": 1, "ssh_public_key": SSH_KEY}
    fleet_id = (await service.alice.post("/fleets", json=body)).json()["fleet_id"]

    async def running() -> bool:
        return (await service.alice.get(f"/fleets/{fleet_id}")).json()["running"] == 1

    await wait_for(running, within=60)
    member = (await service.alice.get(f"/fleets/{fleet_id}")).json()["members"][0]
    async with console_client(service) as browser:
        await sign_in(browser, service.tenants["alice"].token)
        listing = await browser.get("/console/fleets")
        assert listing.status_code == 200 and "web-fleet" in listing.text and "1 / 1" in listing.text
        assert 'aria-current="page">Fleets' in listing.text
        fleet_page = await browser.get(f"/console/fleets/{fleet_id}")
        assert fleet_page.status_code == 200
        text = fleet_page.text
        assert "Fleet web-fleet" in text and "<strong>1 / 1</strong>" in text and "1× RTX4090" in text
        assert f'/console/resources/{member["resource_id"]}' in text and "ssh " in text
        assert "fleet created" in text
        version = re.search(r"/live\?v=([0-9a-f]+)", text)
        assert version is not None
        unchanged = await browser.get(f"/console/fleets/{fleet_id}/live", params={"v": version.group(1)}, headers={"HX-Request": "true"})
        assert unchanged.status_code == 204  # nothing changed: htmx keeps what it shows
        assert (await browser.get("/console/fleets/not-a-fleet")).status_code == 404
        assert (await browser.get("/console/fleets/00000000-0000-0000-0000-000000000000/live")).status_code == 404
    async with console_client(service) as stranger:
        await sign_in(stranger, service.tenants["bob"].token)
        assert (await stranger.get(f"/console/fleets/{fleet_id}")).status_code == 404
        assert "No fleets yet" in (await stranger.get("/console/fleets")).text
    await service.alice.delete(f"/fleets/{fleet_id}")
