"""The console over HTTP (no browser): session cookie, CSRF, search, procure, resources and
actions, each through the same services as the API."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gpusupply.db.models import utcnow
from gpusupply.services import budgets
from gpusupply.services.keys import authenticate, revoke_key
from tests.api.helpers import first_offer, procure, procured_resource
from tests.conftest import SSH_KEY
from tests.web.helpers import (
    ORIGIN,
    console_client,
    csrf_token,
    field_error,
    flash,
    follow,
    hidden,
    offer_ids,
    set_row,
    sign_in,
    statuses,
)

HX = {"HX-Request": "true"}
SAME_ORIGIN = {"Origin": ORIGIN}


def prices(page: str) -> list[float]:
    """The price-per-GPU-hour column of an offers page."""
    rows = re.findall(r"<tr>\s*<td[ >].*?</tr>", page, flags=re.S)
    return [float(re.findall(r'<td class="number">\$([0-9.,]+)</td>', row)[0].replace(",", "")) for row in rows]


async def test_root_leads_to_sign_in_then_offers(service: Any) -> None:
    async with console_client(service) as client:
        assert (await client.get("/")).headers["location"] == "/console/"
        assert (await client.get("/console/")).headers["location"] == "/console/sign-in"
        await sign_in(client, service.tenants["alice"].token)
        assert (await client.get("/console/")).headers["location"] == "/console/offers"


async def test_sign_in_keeps_the_key_in_a_strict_httponly_cookie_only(service: Any) -> None:
    token = service.tenants["alice"].token
    async with console_client(service) as client:
        response = await sign_in(client, token)
        assert response.headers["location"] == "/console/offers"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("gs_session=")
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/console", "Max-Age=43200"):
            assert attribute in cookie
        assert "Secure" not in cookie  # plain http on loopback; set under https
        for path in ("/console/offers", "/console/offers?gpu_type=H100", "/console/resources"):
            page = await client.get(path)
            assert page.status_code == 200
            assert token not in page.text and "alice-key" in page.text
        # The cookie does not authenticate the API: that takes the Bearer header.
        assert (await client.get("/resources")).status_code == 401


async def test_sign_in_refuses_bad_keys_with_the_reason(service: Any) -> None:
    async with console_client(service) as client:
        empty = await client.post("/console/sign-in", data={"api_key": "  "})
        assert empty.status_code == 422 and field_error(empty.text, "api_key") == "Enter your API key."
        bad = await client.post("/console/sign-in", data={"api_key": "gsk_" + "x" * 43})
        assert bad.status_code == 401 and "set-cookie" not in bad.headers
        assert "was not accepted (Invalid authentication credentials)" in field_error(bad.text, "api_key")
        assert 'aria-invalid="true"' in bad.text
        await revoke_key(service.db, _prefix(service.tenants["bob"].token))
        revoked = await client.post("/console/sign-in", data={"api_key": service.tenants["bob"].token})
        assert revoked.status_code == 401 and "API key has been revoked" in revoked.text


def _prefix(token: str) -> str:
    return token[:12]


async def test_pages_ask_to_sign_in_and_come_back(service: Any) -> None:
    async with console_client(service) as client:
        response = await client.get("/console/resources?status=running")
        target = response.headers["location"]
        assert response.status_code == 303 and target.startswith("/console/sign-in?")
        assert parse_qs(urlsplit(target).query)["next"] == ["/console/resources?status=running"]
        # A live fragment asks htmx to load the sign-in page instead of swapping a redirect in.
        fragment = await client.get("/console/resources/rows", headers=HX)
        assert fragment.status_code == 204 and fragment.headers["HX-Redirect"] == "/console/sign-in"
        sign_in_page = await client.get(target)
        assert hidden(sign_in_page.text, "next") == "/console/resources?status=running"
        back = await client.post(
            "/console/sign-in",
            data={"api_key": service.tenants["alice"].token, "next": "/console/resources?status=running"},
        )
        assert back.headers["location"] == "/console/resources?status=running"


@pytest.mark.parametrize("next_path", ["https://evil.example/", "//evil.example/x", "/docs", "/console\\@evil", ""])
async def test_sign_in_never_redirects_out_of_the_console(service: Any, next_path: str) -> None:
    async with console_client(service) as client:
        response = await client.post("/console/sign-in", data={"api_key": service.tenants["alice"].token, "next": next_path})
        assert response.headers["location"] == "/console/offers"


async def test_a_revoked_key_ends_the_session(service: Any) -> None:
    async with console_client(service) as client:
        await sign_in(client, service.tenants["bob"].token)
        assert (await client.get("/console/resources")).status_code == 200
        await revoke_key(service.db, _prefix(service.tenants["bob"].token))
        response = await client.get("/console/resources")
        assert response.status_code == 303 and response.headers["location"].startswith("/console/sign-in")
        page = await follow(client, response)
        assert flash(page.text) == "Your session ended: API key has been revoked."


async def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(service: Any) -> None:
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        refused = await client.post("/console/sign-out", data={}, headers=SAME_ORIGIN)
        assert refused.status_code == 403 and "did not come from a page of this console" in refused.text
        token = await csrf_token(client)
        response = await client.post("/console/sign-out", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert response.headers["location"] == "/console/sign-in"
        assert 'gs_session=""' in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]
        assert (await client.get("/console/offers")).status_code == 303


async def test_forged_posts_change_nothing(service: Any) -> None:
    rid = await procured_resource(service.alice, "nebula")
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        token = await csrf_token(client)
        forged = [
            ({"return_to": "/console/resources"}, SAME_ORIGIN),  # no token
            ({"csrf_token": "0" * 64}, SAME_ORIGIN),  # a wrong token
            ({"csrf_token": token}, {"Origin": "https://evil.example"}),  # the right token from another site
            ({"csrf_token": token}, {"Referer": "https://evil.example/page"}),
            ({"csrf_token": token}, {"Origin": "null"}),
        ]
        for data, headers in forged:
            response = await client.post(f"/console/resources/{rid}/delete", data=data, headers=headers)
            assert response.status_code == 403, (data, headers)
        assert (await service.alice.get(f"/resources/{rid}")).json()["status"] == "pending"
        # A token belongs to one session: signing in again makes a new one.
        async with console_client(service) as other:
            await sign_in(other, service.tenants["alice"].token)
            assert await csrf_token(other) != token
            stale = await other.post(f"/console/resources/{rid}/delete", data={"csrf_token": token}, headers=SAME_ORIGIN)
            assert stale.status_code == 403
        done = await client.post(f"/console/resources/{rid}/delete", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert done.status_code == 303
        assert (await service.alice.get(f"/resources/{rid}")).json()["status"] == "deleting"


@pytest.mark.parametrize("settings_overrides", [{"sandbox_offers": 1000}])  # more than one page of RTX 4090s
async def test_search_sorted_by_price_both_ways(service: Any) -> None:
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        first = await client.get("/console/offers")
        assert first.status_code == 200 and "Choose a GPU and search" in first.text and not offer_ids(first.text)
        api = (await service.alice.post("/get_offers", json={"compute": {"gpu_type": "RTX4090"}}, params={"limit": 1000})).json()
        assert api["total_count"] > 50, "the sandbox should have more RTX 4090 offers than one console page"
        cheapest = await client.get("/console/offers", params={"gpu_type": "RTX4090"})
        assert f"{api['total_count']} offers" in cheapest.text and 'aria-sort="ascending"' in cheapest.text
        assert offer_ids(cheapest.text) == [o["offer_id"] for o in api["offers"][:50]]
        ascending = prices(cheapest.text)
        assert ascending == sorted(ascending)
        dearest = await client.get("/console/offers", params={"gpu_type": "RTX4090", "sort": "-price"})
        assert 'aria-sort="descending"' in dearest.text
        assert offer_ids(dearest.text) == [o["offer_id"] for o in reversed(api["offers"])][:50]
        last_page = (api["total_count"] - 1) // 50 + 1
        tail = await client.get("/console/offers", params={"gpu_type": "RTX4090", "sort": "-price", "page": last_page})
        assert offer_ids(tail.text) == [o["offer_id"] for o in reversed(api["offers"])][(last_page - 1) * 50 :]
        # Filters go to the same search as the API's.
        narrowed = await client.get(
            "/console/offers",
            params={"gpu_type": "nvidia-rtx-4090-24gb", "gpu_count": "1", "max_price_per_gpu_hour": "3",
                    "region": "US", "contract_type": "ondemand", "vendor": "vast"},
        )
        document = {"compute": {"gpu_type": "nvidia-rtx-4090-24gb", "gpu_count": 1, "max_price_per_gpu_hour": 3,
                                "contract_type": "ondemand"}, "region": "US", "vendor": "vast"}
        expected = (await service.alice.post("/get_offers", json=document, params={"limit": 50})).json()
        assert expected["offers"] and offer_ids(narrowed.text) == [o["offer_id"] for o in expected["offers"]]


def column(page: str, index: int) -> list[float]:
    """The numbers of an offers page's `index`-th number column (0: $/GPU-h, 1: $/h, 2: GPU mem, 3: vCPU, 4: RAM)."""
    rows = re.findall(r"<tr>\s*<td[ >].*?</tr>", page, flags=re.S)
    cells = [re.findall(r'<td class="number[^"]*">([^<]*)</td>', row)[index] for row in rows]
    return [float(re.sub(r"[^0-9.]", "", cell) or "nan") for cell in cells]


@pytest.mark.parametrize("settings_overrides", [{"sandbox_offers": 1000}])
async def test_offers_sort_by_memory_vcpus_and_ram_with_minimums(service: Any) -> None:
    api = (await service.alice.post("/get_offers", json={"compute": {"gpu_type": "RTX4090"}}, params={"limit": 1000})).json()
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        for sort, index in (("-vcpus", 3), ("-ram", 4), ("gpu_memory", 2), ("vcpus", 3)):
            page = await client.get("/console/offers", params={"gpu_type": "RTX4090", "sort": sort})
            values = column(page.text, index)
            assert len(values) == 50 and values == sorted(values, reverse=sort.startswith("-")), (sort, values)
            assert 'aria-sort="' + ("descending" if sort.startswith("-") else "ascending") + '"' in page.text
        # At least 16 vCPUs and 64 GB RAM: the same offers as the API's, filtered, in price order.
        wanted = [o for o in api["offers"] if (o["vcpu_count"] or 0) >= 16 and (o["memory_in_gb"] or 0) >= 64]
        narrowed = await client.get("/console/offers", params={"gpu_type": "RTX4090", "min_vcpus": "16", "min_ram": "64"})
        assert f"{len(wanted)} offers" in narrowed.text or (len(wanted) == 1 and "1 offer" in narrowed.text)
        assert offer_ids(narrowed.text) == [o["offer_id"] for o in wanted][:50]
        assert 'value="16"' in narrowed.text and 'value="64"' in narrowed.text  # kept in the form
        huge = await client.get("/console/offers", params={"gpu_type": "RTX4090", "min_gpu_memory": "25"})
        assert "No offers" in huge.text  # every RTX 4090 has 24 GB
        bad = await client.get("/console/offers", params={"gpu_type": "RTX4090", "min_ram": "-1"})
        assert bad.status_code == 422 and field_error(bad.text, "min_ram") == "Enter a number, 0 or more."
        # Sorting links keep the filters and the other column's direction starts largest first.
        assert "sort=-vcpus" in narrowed.text and "min_vcpus=16" in narrowed.text


async def test_procure_form_sets_auto_delete_and_a_spend_limit(service: Any) -> None:
    offer = await first_offer(service.alice, "nebula")
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        form = await client.get(f"/console/offers/{offer['offer_id']}")
        assert 'data-remember="ssh_public_key"' in form.text and 'id="auto_delete_hours"' in form.text
        fields = {"csrf_token": hidden(form.text, "csrf_token"), "form_id": hidden(form.text, "form_id"),
                  "ssh_public_key": SSH_KEY}
        wrong = await client.post(f"/console/offers/{offer['offer_id']}/procure",
                                  data={**fields, "auto_delete_hours": "-2", "spend_limit": "lots"}, headers=SAME_ORIGIN)
        assert wrong.status_code == 422
        assert field_error(wrong.text, "auto_delete_hours").startswith("Enter hours above 0")
        assert field_error(wrong.text, "spend_limit") == "Enter an amount in USD above 0, for example 20."
        assert (await service.alice.get("/resources")).json()["total_count"] == 0
        done = await client.post(f"/console/offers/{offer['offer_id']}/procure",
                                 data={**fields, "auto_delete_hours": "1.5", "spend_limit": "12"}, headers=SAME_ORIGIN)
        rid = done.headers["location"].rsplit("/", 1)[1]
    resource = (await service.alice.get(f"/resources/{rid}")).json()
    assert resource["auto_delete"]["spend_limit"] == 12
    delete_at = datetime.fromisoformat(resource["auto_delete"]["delete_at"])
    assert abs((delete_at - datetime.fromisoformat(resource["created_at"])).total_seconds() - 5400) < 5


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"gpu_type": "H100", "gpu_count": "0"}, "gpu_count", "Enter a whole number of GPUs from 1 to 1024."),
        ({"gpu_type": "H100", "gpu_count": "two"}, "gpu_count", "Enter a whole number of GPUs from 1 to 1024."),
        ({"gpu_type": "H100", "max_price_per_gpu_hour": "-1"}, "max_price_per_gpu_hour", "Enter a price in USD above 0"),
        ({"gpu_type": "H100", "max_price_per_gpu_hour": "nan"}, "max_price_per_gpu_hour", "Enter a price in USD above 0"),
        ({"gpu_type": "Z80"}, "gpu_type", "unknown gpu_type 'Z80'; known families:"),
        ({"gpu_type": "H100", "region": "Mars"}, "region", "unknown region 'Mars'"),
        ({"gpu_type": "H100", "vendor": "aws"}, "vendor", "Input should be 'vast', 'fal', 'nebula', 'lambda' or 'runpod'"),
        ({"gpu_type": "H100", "contract_type": "forever"}, "contract_type", "Input should be 'ondemand' or 'spot'"),
        ({"region": "US"}, "gpu_type", "Choose a GPU to search for."),
    ],
)
async def test_search_errors_show_at_their_field(service: Any, params: dict[str, str], field: str, message: str) -> None:
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        page = await client.get("/console/offers", params=params)
        assert page.status_code == 422
        assert (field_error(page.text, field) or "").startswith(message), page.text
        assert f'aria-describedby="{field}-error"' in page.text and not offer_ids(page.text)


async def test_procure_shows_a_bad_ssh_key_at_the_field_then_procures(service: Any) -> None:
    offer = await first_offer(service.alice, "nebula")
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        form = await client.get(f"/console/offers/{offer['offer_id']}")
        assert form.status_code == 200 and "SSH public key" in form.text
        fields = {"csrf_token": hidden(form.text, "csrf_token"), "form_id": hidden(form.text, "form_id")}
        bad = await client.post(
            f"/console/offers/{offer['offer_id']}/procure",
            data={**fields, "ssh_public_key": "ssh-rsa not-a-key", "resource_name": "web-1"},
            headers=SAME_ORIGIN,
        )
        assert bad.status_code == 422
        assert field_error(bad.text, "ssh_public_key").startswith("The SSH public key is not a valid OpenSSH public key")
        assert "ssh-rsa not-a-key</textarea>" in bad.text and 'value="web-1"' in bad.text  # kept for correcting
        assert (await service.alice.get(f"/offers/{offer['offer_id']}")).json()["status"] == "available"
        good = await client.post(
            f"/console/offers/{offer['offer_id']}/procure",
            data={**fields, "ssh_public_key": SSH_KEY + "\r\n", "resource_name": "web-1"},
            headers=SAME_ORIGIN,
        )
        rid = good.headers["location"].rsplit("/", 1)[1]
        page = await follow(client, good)
        assert flash(page.text).startswith("Procurement started") and 'id="flash-started"' in page.text
        assert "<h1>web-1</h1>" in page.text and statuses(page.text) == ["pending"]
        resource = (await service.alice.get(f"/resources/{rid}")).json()
        assert resource["offer_id"] == offer["offer_id"] and resource["name"] == "web-1"
        # Sent twice (a double click, or back and send again): one procurement.
        again = await client.post(
            f"/console/offers/{offer['offer_id']}/procure",
            data={**fields, "ssh_public_key": SSH_KEY, "resource_name": "web-1"},
            headers=SAME_ORIGIN,
        )
        assert again.headers["location"] == good.headers["location"]
        assert (await service.alice.get("/resources")).json()["total_count"] == 1


async def test_procure_an_offer_someone_took(service: Any) -> None:
    offer = await first_offer(service.alice, "fal")
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        form = await client.get(f"/console/offers/{offer['offer_id']}")
        assert "Startup script" not in form.text  # fal runs no cloud-init
        assert (await procure(service.bob, offer["offer_id"])).status_code == 200
        taken = await client.post(
            f"/console/offers/{offer['offer_id']}/procure",
            data={"csrf_token": hidden(form.text, "csrf_token"), "form_id": hidden(form.text, "form_id"), "ssh_public_key": SSH_KEY},
            headers=SAME_ORIGIN,
        )
        assert taken.status_code == 409 and f"offer {offer['offer_id']} was already procured" in taken.text
        assert "can no longer be procured" in taken.text
        missing = await client.get("/console/offers/not-a-uuid")
        assert missing.status_code == 404 and "does not exist" in missing.text


async def test_resources_list_refreshes_only_when_something_changed(service: Any) -> None:
    rid = await procured_resource(service.alice, "nebula")
    await procured_resource(service.bob, "nebula")
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        page = await client.get("/console/resources")
        assert page.status_code == 200 and statuses(page.text) == ["pending"]  # bob's is not listed
        assert '<th scope="col" class="number">Cost</th>' in page.text and "not yet" in page.text and "$0.00" in page.text
        poll = re.search(r'hx-get="(/console/resources/rows[^"]*)"', page.text).group(1).replace("&amp;", "&")
        unchanged = await client.get(poll, headers=HX)
        assert unchanged.status_code == 204
        await set_row(
            service, rid, status="running", external_ip="203.0.113.9", ssh_port=2222, vendor_instance_id="n-1",
            price_per_hour=1.5, running_since=utcnow() - timedelta(hours=2, seconds=1),
        )
        changed = await client.get(poll, headers=HX)
        assert changed.status_code == 200 and changed.text.lstrip().startswith("<tbody")
        assert statuses(changed.text) == ["running"] and "<code>ssh root@203.0.113.9 -p 2222</code>" in changed.text
        # Cost so far from the cost service: 2 hours at $1.50/h, and the running time under it.
        assert '<td class="number wide-only">$1.50/h</td>' in changed.text
        assert '<td class="number">$3.00<br class="wide-only"><small class="wide-only">2 h 00 min</small></td>' in changed.text
        assert f'id="delete-{rid}"' in changed.text and f'id="stop-{rid}"' in changed.text
        filtered = await client.get("/console/resources", params={"status": "deleted"})
        assert statuses(filtered.text) == [] and "No resources with status deleted." in filtered.text
        wrong = await client.get("/console/resources", params={"status": "sleeping"})
        assert wrong.status_code == 422 and field_error(wrong.text, "status-filter").startswith("unknown status 'sleeping'")


async def test_resource_page_shows_the_timeline_to_its_tenant_only(service: Any) -> None:
    rid = await procured_resource(service.alice, "nebula")
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        page = await client.get(f"/console/resources/{rid}")
        assert page.status_code == 200 and 'class="timeline"' in page.text
        assert "<strong>pending</strong>" in page.text and "procured offer" in page.text
        live = re.search(r'hx-get="(/console/resources/[^"]*/live[^"]*)"', page.text).group(1)
        assert (await client.get(live, headers=HX)).status_code == 204
        await set_row(service, rid, status="running", vendor_instance_id="n-1", last_synced_at=utcnow())
        fresh = await client.get(live, headers=HX)
        assert statuses(fresh.text) == ["running"]
        assert 'hx-swap-oob="innerHTML">resource ' in fresh.text and "is running.</span>" in fresh.text
        assert '<p id="flash-started" hx-swap-oob="delete">' in fresh.text  # the procurement banner goes
        await set_row(service, rid, status="deleted", vendor_status="not found", external_ip=None, ssh_host=None,
                      ssh_port=None, ended_at=utcnow())
        ended = await client.get(live, headers=HX)
        assert statuses(ended.text) == ["deleted"] and "(vendor last said “not found”)" in ended.text
        assert "vendor says" not in ended.text and ">none<" not in ended.text and 'class="actions"' not in ended.text
        assert "<dd>none (ended)</dd>" in ended.text
    async with console_client(service) as bob:
        await sign_in(bob, service.tenants["bob"].token)
        assert (await bob.get(f"/console/resources/{rid}")).status_code == 404
        assert (await bob.get(f"/console/resources/{rid}/live", headers=HX)).status_code == 404
        token = await csrf_token(bob)
        refused = await bob.post(f"/console/resources/{rid}/delete", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert flash((await follow(bob, refused)).text) == f"Not done: resource {rid} not found."
    assert (await service.alice.get(f"/resources/{rid}")).json()["status"] == "deleted"  # as alice's test left it


async def test_actions_are_confirmed_then_done(service: Any) -> None:
    rid = await procured_resource(service.alice, "nebula")
    await set_row(service, rid, status="running", vendor_instance_id="n-1", last_synced_at=utcnow())
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        # Without JavaScript the confirmation is a page; with htmx, the dialog's content.
        confirm = await client.get(f"/console/resources/{rid}/confirm/stop", params={"return_to": "/console/resources"})
        assert confirm.status_code == 200 and "<html" in confirm.text and "Stop resource" in confirm.text
        dialog = await client.get(f"/console/resources/{rid}/confirm/stop?return_to=/console/resources", headers=HX)
        assert "<html" not in dialog.text and 'formmethod="dialog"' in dialog.text
        token = hidden(dialog.text, "csrf_token")
        assert hidden(dialog.text, "return_to") == "/console/resources"
        done = await client.post(
            f"/console/resources/{rid}/stop", data={"csrf_token": token, "return_to": "/console/resources"}, headers=SAME_ORIGIN
        )
        assert done.headers["location"] == "/console/resources"
        listing = await follow(client, done)
        assert flash(listing.text) == f"Stopping resource {rid[:8]}." and statuses(listing.text) == ["stopping"]
        # A delete while the stop is in flight asks whether to force it.
        confirm_delete = await client.get(f"/console/resources/{rid}/confirm/delete", headers=HX)
        assert 'name="force"' in confirm_delete.text
        refused = await client.post(f"/console/resources/{rid}/delete", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert "pass force=true to delete now" in flash((await follow(client, refused)).text)
        forced = await client.post(
            f"/console/resources/{rid}/delete",
            data={"csrf_token": token, "force": "yes", "return_to": f"/console/resources/{rid}"},
            headers=SAME_ORIGIN,
        )
        assert forced.headers["location"] == f"/console/resources/{rid}"
        page = await follow(client, forced)
        assert statuses(page.text) == ["deleting"] and "Delete…" not in page.text
        gone = await client.get(f"/console/resources/{rid}/confirm/delete", headers=HX)
        assert "Not possible" in gone.text and f"resource {rid[:8]} is deleting: delete is not possible now" in gone.text
        # The service decides on POST all the same (the page may be older than the status).
        again = await client.post(f"/console/resources/{rid}/delete", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert flash((await follow(client, again)).text) == f"Not done: resource {rid} is already being deleted."
        unknown = await client.get(f"/console/resources/{rid}/confirm/explode", headers=HX)
        assert "Not possible" in unknown.text and "unknown action 'explode'" in html.unescape(unknown.text)


async def test_vendor_without_stop_offers_no_stop(service: Any) -> None:
    rid = await procured_resource(service.alice, "fal")
    await set_row(service, rid, status="running", vendor_instance_id="f-1", last_synced_at=utcnow())
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        page = await client.get(f"/console/resources/{rid}")
        assert f'id="delete-{rid}"' in page.text
        assert f'id="stop-{rid}"' not in page.text and f'id="reboot-{rid}"' not in page.text
        token = hidden(page.text, "csrf_token")
        response = await client.post(f"/console/resources/{rid}/stop", data={"csrf_token": token}, headers=SAME_ORIGIN)
        assert flash((await follow(client, response)).text) == "Not done: vendor fal does not support stop."


async def test_pages_carry_security_headers_and_stay_out_of_the_api(service: Any) -> None:
    async with console_client(service) as client:
        sign_in_page = await client.get("/console/sign-in")
        policy = sign_in_page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
        assert sign_in_page.headers["cache-control"] == "no-store"
        assert sign_in_page.headers["x-frame-options"] == "DENY"
        script = await client.get("/console/static/htmx.min.js")
        assert script.status_code == 200 and script.text.startswith("/*! htmx.org 2.0.11")
        assert "Zero-Clause BSD" in script.text[:400]
        style = await client.get("/console/static/pico.classless.min.css")
        assert style.status_code == 200 and "Pico CSS" in style.text[:200]
        assert (await client.get("/console/static/../templates/base.html")).status_code == 404
    schema = (await service.anonymous.get("/openapi.json")).json()
    assert not [path for path in schema["paths"] if path == "/" or path.startswith("/console")]


async def test_budget_refusals_show_on_the_procure_form(service: Any) -> None:
    offer = await first_offer(service.alice, "nebula")
    principal = await authenticate(service.db, f"Bearer {service.tenants['alice'].token}")
    await budgets.put_budget(service.db, principal, max_hourly_spend=0.01, monthly_budget=None, delete_on_exhaustion=False)
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        form = await client.get(f"/console/offers/{offer['offer_id']}")
        fields = {"csrf_token": hidden(form.text, "csrf_token"), "form_id": hidden(form.text, "form_id")}
        refused = await client.post(
            f"/console/offers/{offer['offer_id']}/procure", data={**fields, "ssh_public_key": SSH_KEY}, headers=SAME_ORIGIN
        )
        assert refused.status_code == 402 and "max_hourly_spend exceeded" in refused.text
        assert SSH_KEY in refused.text  # the form is kept
        listing = await client.get("/console/resources")
        assert "This month: <strong>$0.00</strong> spent" in listing.text and "capped at $0.01/h" in listing.text


async def test_a_cluster_page_lists_its_nodes_with_their_ssh_commands(service: Any) -> None:
    from tests.api.helpers import search

    body = await search(service.alice, "compute:\n  gpu_type: H100\n  gpu_count: 16\n", limit=100)
    offer = next(o for o in body["offers"] if o["type"] == "cluster")
    answer = (await procure(service.alice, offer["offer_id"], cluster_name="web-cluster")).json()
    cluster_id, *node_ids = answer["resource_ids"]
    for n, node_id in enumerate(node_ids, start=1):  # no engine here: the nodes' rows as the engine leaves them
        await set_row(service, node_id, status="running", vendor_instance_id=f"n-{n}", external_ip=f"203.0.113.{n}",
                      ssh_port=22, last_synced_at=utcnow(), running_since=utcnow())
    async with console_client(service) as client:
        await sign_in(client, service.tenants["alice"].token)
        page = (await client.get(f"/console/resources/{cluster_id}")).text
        assert 'id="nodes-heading"' in page
        for n, node_id in enumerate(node_ids, start=1):
            assert f'href="/console/resources/{node_id}">web-cluster-node-{n}</a>' in page
            assert f"<code>ssh root@203.0.113.{n} -p 22</code>" in page
        node_page = (await client.get(f"/console/resources/{node_ids[0]}")).text
        assert f'Node of cluster <a href="/console/resources/{cluster_id}">web-cluster</a>' in node_page
        assert f'id="delete-{node_ids[0]}"' not in node_page  # a node is deleted with its cluster
