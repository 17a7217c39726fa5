"""Property-based requests generated from our own OpenAPI document (schemathesis): whatever the
input, the service answers a documented status with a body that matches our own schema, never a
500. Valid and schema-breaking input for every route; at least 1,000 requests in all (counted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from gpusupply.app import create_app
from gpusupply.db.session import Database
from gpusupply.sandbox.runner import ServerThread
from gpusupply.services.keys import create_key
from gpusupply.settings import Settings
from tests.conftest import BACKENDS, make_test_settings, migrated_url


async def _first_key(settings: Settings) -> str:
    db = Database(settings.effective_database_url)
    try:
        await db.migrate()
        return (await create_key(db, "fuzzer"))[1]
    finally:
        await db.dispose()


@contextlib.contextmanager
def serve_api(settings: Settings) -> Iterator[tuple[str, str]]:
    """The whole app (sandbox vendors included) served by uvicorn on loopback, and a key."""
    with ThreadPoolExecutor(1) as pool:
        token = pool.submit(asyncio.run, _first_key(settings)).result()
    with ServerThread(create_app(settings, run_engine=False)) as server:
        yield server.url, token


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with serve_api(make_test_settings(Path(tmp_path_factory.mktemp("fuzz")), sandbox_offers=100)) as served:
        yield served


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


# ----- poisoned fields -------------------------------------------------------------------------------
POISON_EXAMPLES = 25  # per route and backend
HUGE_DIGITS = st.integers(min_value=4301, max_value=6000)  # past Python's int() limit (4,300 digits)
_BAD_CHARACTER = st.one_of(st.just("\x00"), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))


def _poisoned_text(where: str) -> st.SearchStrategy[str]:
    """Text holding a NUL or (not in a query string, which is UTF-8) a lone surrogate."""
    bad = st.just("\x00") if where == "query" else _BAD_CHARACTER
    return st.builds(lambda a, c, b: a + c + b, st.text(max_size=4), bad, st.text(max_size=4))


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every string and integer in a generated body."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        yield path, value


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


HUGE_MARK = "HUGE-INTEGER-HERE"


def _encode(body: Any, media_type: str, huge: str | None) -> bytes:
    """The body as the client sends it: JSON writes a lone surrogate as \\ud800, YAML as \\uD800;
    an integer too long for json.dumps is spliced in as text."""
    text = yaml.safe_dump(body) if "yaml" in media_type else json.dumps(body)
    if huge is not None:
        text = text.replace(f'"{HUGE_MARK}"', huge).replace(HUGE_MARK, huge)
    return text.encode()


def _poison_cases(operation: Any) -> st.SearchStrategy[tuple[Any, str, Any, str, str | None]]:
    """A valid generated request with one string or integer of its body or query replaced by poison:
    (case, where, field path, kind, huge integer text or None)."""

    @st.composite
    def build(draw: Any) -> tuple[Any, str, Any, str, str | None]:
        case = draw(operation.as_strategy(schemathesis.GenerationMode.POSITIVE))
        targets = [("body", path, value) for path, value in _leaves(case.body)] if isinstance(case.body, dict) else []
        targets += [("query", (name,), value) for name, value in (case.query or {}).items()]
        targets = [t for t in targets if isinstance(t[2], str | int)]
        if not targets:
            return case, "none", (), "none", None
        where, path, value = draw(st.sampled_from(targets))
        kind = "text" if isinstance(value, str) else "integer"
        if kind == "text":
            poison: Any = draw(_poisoned_text(where))
            huge = None
        else:
            huge = draw(st.sampled_from(["", "-"])) + "9" * draw(HUGE_DIGITS)
            poison = huge if where == "query" else HUGE_MARK
        if where == "body":
            case.body = _replace(case.body, path, poison)
        else:
            case.query = {**case.query, path[0]: poison}
        return case, where, path, kind, huge

    return build()


@pytest.fixture(params=BACKENDS)
def backend_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = migrated_url(request.param, request)
    with serve_api(make_test_settings(tmp_path, sandbox_offers=50, database_url=url)) as served:
        yield served


def test_poisoned_fields_are_refused_on_both_databases(backend_api: tuple[str, str]) -> None:
    """Every string and integer field the schema declares, in bodies and query strings, drawn with
    NUL, a lone surrogate or a 4,301+ digit integer: never a 5xx; poisoned text is always a 422
    naming that field."""
    url, token = backend_api
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    poisoned: list[tuple[str, str]] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for result in schema.get_all_operations():
            _poison(client, result.ok(), poisoned)
    kinds = {kind for _, kind in poisoned}
    assert kinds == {"text", "integer"} and len(poisoned) >= 100, (kinds, len(poisoned), sorted(set(poisoned)))
    assert {"/get_offers", "/procure_offer", "/webhooks", "/budget", "/usage", "/resources"} <= {p for p, _ in poisoned}


def _poison(client: httpx.Client, operation: Any, poisoned: list[tuple[str, str]]) -> None:
    documented = set(operation.definition.raw["responses"])

    @given(drawn=_poison_cases(operation))
    @settings(max_examples=POISON_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def check(drawn: tuple[Any, str, Any, str, str | None]) -> None:
        case, where, path, kind, huge = drawn
        if where == "none":
            return  # nothing to poison (no body or query fields)
        media_type = case.media_type or "application/json"
        content = None if case.body is None or isinstance(case.body, NotSet) else _encode(case.body, media_type, huge)
        headers = {"Content-Type": media_type} if content is not None else {}
        response = client.request(case.method, case.formatted_path, params=case.query, content=content, headers=headers)
        poisoned.append((operation.path, kind))
        what = f"{case.method} {case.formatted_path} {where} {path} {kind} {media_type}: {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, what
        assert str(response.status_code) in documented, what
        if kind == "text":  # every string field is checked before anything else reads it
            assert response.status_code == 422, what
            locs = [tuple(error["loc"][:2]) for error in response.json()["detail"]]
            # get_offers reads its body only once the query is valid: a generated query may be refused first.
            refused_first = where == "body" and any(loc[0] == "query" for loc in locs)
            assert (where, path[0]) in locs or refused_first, what

    check()
