"""Property-based requests generated from our own OpenAPI document (schemathesis): whatever the
input, the service answers a documented status with a body that matches our own schema, never a
500. Valid and schema-breaking input for every route; at least 1,000 requests in all (counted)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from gpusupply.api.app import create_app
from gpusupply.db.session import Database
from gpusupply.sandbox.runner import ServerThread
from gpusupply.services.keys import create_key
from gpusupply.settings import Settings
from tests.conftest import make_test_settings


async def _first_key(settings: Settings) -> str:
    db = Database(settings.effective_database_url)
    try:
        await db.migrate()
        return (await create_key(db, "fuzzer"))[1]
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The whole app (sandbox vendors included) served by uvicorn on loopback, and a key."""
    settings = make_test_settings(Path(tmp_path_factory.mktemp("fuzz")), sandbox_offers=100)
    with ThreadPoolExecutor(1) as pool:
        token = pool.submit(asyncio.run, _first_key(settings)).result()
    with ServerThread(create_app(settings, run_engine=False)) as server:
        yield server.url, token


MIN_REQUESTS = 1000
EXAMPLES_PER_MODE = 30  # per route and generation mode; routes without parameters yield fewer


def test_no_server_errors(live_api: tuple[str, str]) -> None:
    url, token = live_api
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    sent: list[str] = []

    for operation in operations:
        for mode in schemathesis.GenerationMode:  # valid input, and input that breaks the schema
            try:
                _fuzz(operation, mode, url, token, sent)
            except Unsatisfiable:
                assert mode == schemathesis.GenerationMode.NEGATIVE  # nothing to break (no parameters)
    assert len(sent) >= MIN_REQUESTS, f"only {len(sent)} requests generated"
    assert {path.split("?")[0] for path in sent} >= {op.path for op in operations}  # every route was called


def _fuzz(operation: Any, mode: Any, url: str, token: str, sent: list[str]) -> None:
    documented = set(operation.definition.raw["responses"])
    headers = {"Authorization": f"Bearer {token}"}

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def check(case: Any) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        sent.append(operation.path)
        where = (case.method, case.path, response.status_code, response.text[:300])
        assert response.status_code < 500, where
        assert str(response.status_code) in documented, where
        # The answer matches the schema we publish for that status (body, content type).
        case.validate_response(response, checks=[response_schema_conformance, content_type_conformance], headers=headers)

    check()
