"""Helpers for console tests: a signed-in console client over HTTP and reading its pages."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
from sqlalchemy import update

from gpusupply.db.models import Resource

ORIGIN = "http://service"


def console_client(service: Any) -> httpx.AsyncClient:
    """A browser-like client of the console (cookies kept, redirects not followed)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url=ORIGIN)


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    response = await client.post("/console/sign-in", data={"api_key": token}, headers={"Origin": ORIGIN})
    assert response.status_code == 303, response.text
    return response


def hidden(page: str, name: str) -> str:
    """The value of the first input called `name` in a page."""
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page)
    assert match, f"no input {name!r} in the page"
    return html.unescape(match.group(1))


async def csrf_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/console/offers")
    assert page.status_code == 200, page.text
    return hidden(page.text, "csrf_token")


def offer_ids(page: str) -> list[str]:
    return re.findall(r'href="/console/offers/([0-9a-f-]{36})"', page)


def statuses(page: str) -> list[str]:
    """The status words shown in a page (table rows or the resource page), in order."""
    return re.findall(r'class="status" data-tone="\w+" title="[^"]*"><span aria-hidden="true">[^<]*</span> (\w+)</span>', page)


def field_error(page: str, field: str) -> str | None:
    match = re.search(rf'<small id="{re.escape(field)}-error" class="field-error">([^<]*)</small>', page)
    return html.unescape(match.group(1)) if match else None


def flash(page: str) -> str | None:
    match = re.search(r'<p class="flash" data-tone="\w+" role="\w+"[^>]*>\s*<span aria-hidden="true">[^<]*</span>\s*([^<]*)', page)
    return html.unescape(match.group(1).strip()) if match else None


async def set_row(service: Any, resource_id: str, **values: Any) -> None:
    """Test setup: put the row where the engine would have put it."""
    async with service.db.transaction() as session:
        await session.execute(update(Resource).where(Resource.id == uuid.UUID(resource_id)).values(**values))


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    """The page a 303 leads to."""
    assert response.status_code == 303, response.text
    return await client.get(response.headers["location"])
