"""create_app on its own: it migrates, builds its vendors (sandboxes without keys), reports the
banner, and closes everything it started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gpusupply import app as app_module
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


@pytest.mark.parametrize("settle", [True, False])
async def test_the_heap_is_settled_once_started_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settle: bool
) -> None:
    calls: list[bool] = []  # whether the app was ready (its services wired) when it was called
    app = create_app(make_test_settings(tmp_path, enabled_vendors="fal"), run_engine=False, settle_heap_when_started=settle)
    monkeypatch.setattr(app_module, "settle_heap", lambda: calls.append(hasattr(app.state, "ctx")))
    async with app.router.lifespan_context(app):
        assert calls == ([True] if settle else [])


def test_settling_the_heap_freezes_what_is_held_and_enlarges_the_young_generation() -> None:
    # In a process of its own: frozen objects stay frozen for the rest of a process.
    script = (
        "import gc; from gpusupply.app import settle_heap, YOUNG_GENERATION_SIZE as n; "
        "before = gc.get_threshold(); assert gc.get_freeze_count() == 0; settle_heap(); "
        "print(gc.get_freeze_count() > 50_000, gc.get_threshold() == (n, *before[1:]), before[0] < n)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["True", "True", "True"]
