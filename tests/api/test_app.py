"""create_app on its own: it migrates, builds its vendors (sandboxes without keys), reports the
banner, and closes everything it started."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gpusupply.app import create_app
from tests.conftest import make_test_settings


async def test_app_builds_and_closes_its_own_vendors(tmp_path: Path) -> None:
    settings = make_test_settings(tmp_path, sandbox_offers=50, enabled_vendors="fal,nebula")
    app = create_app(settings, run_engine=True)
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        assert app.state.banner == {
            "database": ctx.db.display_url,
            "vendors": {"fal": "sandbox", "nebula": "sandbox"},
            "engine": True,
            "version": app.version,
        }
        urls = dict(ctx.vendors.urls)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{urls['nebula']}/_sandbox/state")).status_code == 200
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{urls['nebula']}/_sandbox/state")


async def test_a_bad_vendor_setting_fails_the_start_clearly(tmp_path: Path) -> None:
    app = create_app(make_test_settings(tmp_path, enabled_vendors="vast,aws"), run_engine=False)
    with pytest.raises(ValueError, match="unknown vendor"):
        async with app.router.lifespan_context(app):
            pass
