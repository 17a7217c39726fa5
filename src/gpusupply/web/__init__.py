"""The web console: server-rendered pages over the same services as the API (see docs/console.md).

`install(app)` adds it to the FastAPI app: the pages under /console, their static files, and `/`
leading there.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    from gpusupply.web import charts, fleets, plumbing, routes

    app.include_router(routes.router)
    app.include_router(charts.router)
    app.include_router(fleets.router)
    app.add_api_route("/", routes.root, methods=["GET"], include_in_schema=False)
    app.mount(f"{plumbing.PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(plumbing.SignInRequired, plumbing.sign_in_required)
    app.add_exception_handler(plumbing.FormRejected, plumbing.form_rejected)
    # The API's error handlers answer our paths with a page (a database outage is a 503 page).
    app.state.error_page = plumbing.bare_error_page
    app.state.error_page_prefix = plumbing.PREFIX
