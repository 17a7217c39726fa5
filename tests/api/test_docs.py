"""/docs works offline: Swagger UI's page names no other host, and its files come from the package."""

from __future__ import annotations

import re
from typing import Any


async def test_docs_page_and_its_assets_are_served_from_here(service: Any) -> None:
    page = await service.anonymous.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle(" in page.text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]", page.text, re.IGNORECASE), page.text  # no host but ours
    assert '"validatorUrl": null' in page.text
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(referenced) == 3 and all(url.startswith("/docs/assets/") for url in referenced)
    for url in referenced:
        asset = await service.anonymous.get(url)
        assert asset.status_code == 200 and len(asset.content) > 500, url
    assert (await service.anonymous.get("/openapi.json")).status_code == 200
    assert (await service.anonymous.get("/redoc")).status_code == 404  # ReDoc would need a CDN
