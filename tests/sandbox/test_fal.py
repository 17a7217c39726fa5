"""The fal Compute sandbox, over HTTP on loopback: conformance, errors, faults, determinism."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.fal import (
    IDEMPOTENCY_WINDOW_SECONDS,
    REGIONS,
    FalSandbox,
    decode_cursor,
    encode_cursor,
    fal_status,
    parse_limit,
)

from .fal_helpers import (
    ERROR_SCHEMA,
    INSTANCE_SCHEMA,
    INSTANCES,
    SSH_KEY,
    advance,
    assert_valid,
    create,
    key_headers,
    served_fal,
    set_config,
    set_faults,
    state,
    strip_docs,
)

# The seed pages sit in ../shared beside the repository (as on CI's clean clone).
SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
ONE_X = {"instance_type": "gpu_1x_h100_sxm5", "ssh_key": SSH_KEY}
EIGHT_X = {"instance_type": "gpu_8x_h100_sxm5", "ssh_key": SSH_KEY}
NOT_FOUND_BODY = {"error": {"type": "not_found", "message": "Resource not found"}}
AUTH_REQUIRED_BODY = {"error": {"type": "authorization_error", "message": "Authentication required"}}
ACCESS_DENIED_BODY = {"error": {"type": "authorization_error", "message": "Access denied"}}


def _seed_openapi(prefix: str) -> dict[str, Any]:
    path = next(SEEDS.glob(f"{prefix}_*.txt"), None)
    if path is None:
        pytest.skip(f"seed pages not present in {SEEDS}")
    text = path.read_text()
    block = text.split("````yaml", 1)[1].split("\n", 1)[1].split("````", 1)[0]
    return yaml.safe_load(block)


def test_schemas_match_seed_pages() -> None:
    create_op = _seed_openapi("004")["paths"]["/compute/instances"]["post"]["responses"]
    delete_op = _seed_openapi("000")["paths"]["/compute/instances/{id}"]["delete"]["responses"]
    assert strip_docs(create_op["201"]["content"]["application/json"]["schema"]) == INSTANCE_SCHEMA
    error_schemas = [create_op[c] for c in ("400", "401", "403", "429", "500")] + [
        delete_op[c] for c in ("401", "403", "404", "429", "500")
    ]
    for response in error_schemas:
        content = response["content"]["application/json"]
        assert strip_docs(content["schema"]) == ERROR_SCHEMA
        assert_valid("error", content["example"])  # the documented bodies fit the schema too
    assert set(delete_op) == {"204", "401", "403", "404", "429", "500"}


# ----- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "elapsed", "expected"),
    [
        ("creating", 0.0, "init"),
        ("creating", 9.9, "init"),
        ("creating", 10.0, "pending"),
        ("loading", 40.0, "provisioning"),
        ("running", 70.0, "ready"),
        ("rebooting", 70.0, "ready"),
        ("stopped", 70.0, "stopped"),
        ("preempted", 70.0, "unknown"),
    ],
)
def test_fal_status(phase: str, elapsed: float, expected: str) -> None:
    assert fal_status(phase, elapsed, 60.0) == expected


@pytest.mark.parametrize(
    ("cursor", "page"),
    [("Mg==", 2), (encode_cursor(17), 17), ("MA==", None), ("!!", None), (base64.b64encode(b"x").decode(), None), ("", None)],
)
def test_decode_cursor(cursor: str, page: int | None) -> None:
    assert decode_cursor(cursor) == page


@pytest.mark.parametrize(("text", "limit"), [(None, 50), ("1", 1), ("100", 100), ("5000", 100), ("0", None), ("-3", None), ("x", None)])
def test_parse_limit(text: str | None, limit: int | None) -> None:
    assert parse_limit(text) == limit


# ----- auth and isolation ----------------------------------------------------------------------------

ROUTES = [("GET", INSTANCES), ("GET", INSTANCES + "/inst_x"), ("POST", INSTANCES), ("DELETE", INSTANCES + "/inst_x")]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer k1"}, {"Authorization": "Key"}, {"Authorization": "k1"}])
def test_missing_or_wrong_auth_is_401_on_every_route(headers: dict[str, str]) -> None:
    with served_fal() as (_, client):
        for method, path in ROUTES:
            response = client.request(method, path, headers=headers, json=ONE_X if method == "POST" else None)
            assert response.status_code == 401, (method, path)
            assert response.json() == AUTH_REQUIRED_BODY


def test_key_without_compute_permission_is_403() -> None:
    with served_fal() as (_, client):
        for method, path in ROUTES:
            response = client.request(method, path, headers=key_headers("nocompute-key"), json=ONE_X if method == "POST" else None)
            assert response.status_code == 403
            assert response.json() == ACCESS_DENIED_BODY


def test_accounts_never_see_each_other() -> None:
    with served_fal() as (_, client):
        mine = create(client, "alice").json()
        assert client.get(INSTANCES, headers=key_headers("bob")).json() == {"instances": [], "next_cursor": None, "has_more": False}
        assert client.get(f"{INSTANCES}/{mine['id']}", headers=key_headers("bob")).json() == NOT_FOUND_BODY
        assert client.delete(f"{INSTANCES}/{mine['id']}", headers=key_headers("bob")).status_code == 404
        listed = client.get(INSTANCES, headers=key_headers("alice")).json()["instances"]
        assert [i["id"] for i in listed] == [mine["id"]]


# ----- create ----------------------------------------------------------------------------------------


def test_create_answers_201_with_a_compute_instance() -> None:
    with served_fal() as (sandbox, client):
        response = create(client, "k1")
        assert response.status_code == 201
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert_valid("instance", body)
        assert body["id"].startswith("inst_")
        assert body["status"] == "init" and "ip" not in body and "sector" not in body
        assert body["region"] in REGIONS
        assert body["creator_user_nickname"]
        assert [c["instance_id"] for c in state(client)["creates"]] == [body["id"]]


def test_8x_create_keeps_or_assigns_a_sector_in_that_sectors_region() -> None:
    with served_fal() as (sandbox, client):
        chosen = create(client, "k1", {**EIGHT_X, "sector": "sector_2"}).json()
        assert chosen["sector"] == "sector_2" and chosen["region"] == sandbox.sector_regions["sector_2"]
        assigned = create(client, "k1", EIGHT_X).json()
        assert assigned["sector"] in ("sector_1", "sector_2", "sector_3")
        assert assigned["region"] == sandbox.sector_regions[assigned["sector"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ssh_key": SSH_KEY}, "instance_type is required"),
        ({"instance_type": "gpu_2x_a100", "ssh_key": SSH_KEY}, "instance_type must be one of"),
        ({"instance_type": "gpu_1x_h100_sxm5"}, "ssh_key is required"),
        ({"instance_type": "gpu_1x_h100_sxm5", "ssh_key": ""}, "ssh_key is required"),
        ({"instance_type": "gpu_1x_h100_sxm5", "ssh_key": 42}, "ssh_key is required"),
        ({**EIGHT_X, "sector": "sector_9"}, "sector must be one of"),
        ({**ONE_X, "sector": "sector_1"}, "sector is only valid with gpu_8x_h100_sxm5"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_create_validation_errors(body: Any, message: str) -> None:
    with served_fal() as (_, client):
        response = client.post(INSTANCES, json=body, headers=key_headers("k1"))
        assert response.status_code == 400
        assert_valid("error", response.json())
        assert response.json()["error"]["type"] == "validation_error"
        assert message in response.json()["error"]["message"]
        assert state(client)["creates"] == []


def test_create_with_broken_json_or_oversized_key_is_400() -> None:
    with served_fal() as (_, client):
        broken = client.post(INSTANCES, content=b"{not json", headers={**key_headers("k1"), "Content-Type": "application/json"})
        assert broken.status_code == 400 and broken.json()["error"]["type"] == "validation_error"
        long_key = create(client, "k1", idem="k" * 256)
        assert long_key.status_code == 400 and "Idempotency-Key" in long_key.json()["error"]["message"]


def test_idempotency_key_replays_the_first_response_per_account_for_ten_minutes() -> None:
    with served_fal() as (_, client):
        first = create(client, "k1", idem="key-1")
        advance(client, 100)
        again = create(client, "k1", idem="key-1")
        assert again.status_code == 201 and again.json() == first.json()  # the cached body, status included
        other_account = create(client, "k2", idem="key-1")
        assert other_account.json()["id"] != first.json()["id"]
        mismatch = create(client, "k1", EIGHT_X, idem="key-1")
        assert mismatch.status_code == 400 and mismatch.json()["error"]["type"] == "validation_error"
        assert len(state(client)["creates"]) == 2
        advance(client, IDEMPOTENCY_WINDOW_SECONDS)  # the key is forgotten: a repeat creates again
        late = create(client, "k1", idem="key-1")
        assert late.status_code == 201 and late.json()["id"] != first.json()["id"]
        assert len(state(client)["creates"]) == 3


# ----- lifecycle, get, delete ------------------------------------------------------------------------


def test_lifecycle_init_pending_provisioning_ready_with_ip() -> None:
    with served_fal() as (_, client):  # ready_after = 60 s of sandbox clock
        instance_id = create(client, "k1").json()["id"]
        seen = []
        for step in (0, 15, 20, 30):
            advance(client, step)
            body = client.get(f"{INSTANCES}/{instance_id}", headers=key_headers("k1")).json()
            assert_valid("instance", body)
            seen.append((body["status"], "ip" in body))
        assert seen == [("init", False), ("pending", False), ("provisioning", False), ("ready", True)]


def test_delete_is_204_then_404_everywhere() -> None:
    with served_fal() as (_, client):
        instance_id = create(client, "k1").json()["id"]
        deleted = client.delete(f"{INSTANCES}/{instance_id}", headers=key_headers("k1"))
        assert deleted.status_code == 204 and deleted.content == b""
        gone = client.get(f"{INSTANCES}/{instance_id}", headers=key_headers("k1"))
        assert gone.status_code == 404 and gone.json() == NOT_FOUND_BODY
        assert client.delete(f"{INSTANCES}/{instance_id}", headers=key_headers("k1")).json() == NOT_FOUND_BODY
        assert client.get(INSTANCES, headers=key_headers("k1")).json()["instances"] == []
        truth = state(client)
        assert [d["instance_id"] for d in truth["deletes"]] == [instance_id]
        assert [i["phase"] for i in truth["instances"]] == ["deleted"]


def test_unknown_path_and_method_answer_in_fals_envelope() -> None:
    with served_fal() as (_, client):
        missing = client.get("/v1/compute/nothing/here", headers=key_headers("k1"))
        assert missing.status_code == 404 and missing.json() == NOT_FOUND_BODY
        wrong_method = client.put(INSTANCES, headers=key_headers("k1"))
        assert wrong_method.status_code == 405
        assert_valid("error", wrong_method.json())
        assert wrong_method.json()["error"]["type"] == "not_implemented"


# ----- pagination ------------------------------------------------------------------------------------


def test_list_pages_with_base64_page_cursors() -> None:
    with served_fal(SandboxConfig(seed=7, offers=2000, ready_after=60.0)) as (_, client):
        created = [create(client, "k1").json()["id"] for _ in range(5)]
        pages, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            body = client.get(INSTANCES, params=params, headers=key_headers("k1")).json()
            assert_valid("list", body)
            pages.append(body)
            cursor = body["next_cursor"]
            assert body["has_more"] == (cursor is not None)
            if cursor is None:
                break
        assert [p["next_cursor"] for p in pages] == ["Mg==", "Mw==", None]
        assert [i["id"] for p in pages for i in p["instances"]] == created
        whole = client.get(INSTANCES, headers=key_headers("k1")).json()  # default limit holds all five
        assert [i["id"] for i in whole["instances"]] == created and whole["has_more"] is False
        beyond = client.get(INSTANCES, params={"cursor": encode_cursor(9)}, headers=key_headers("k1")).json()
        assert beyond == {"instances": [], "next_cursor": None, "has_more": False}


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "ten"}, {"cursor": "%%%"}, {"cursor": "MA=="}, {"cursor": "YWJj"}])
def test_list_rejects_bad_limit_or_cursor(params: dict[str, str]) -> None:
    with served_fal() as (_, client):
        response = client.get(INSTANCES, params=params, headers=key_headers("k1"))
        assert response.status_code == 400
        assert_valid("error", response.json())
        assert response.json()["error"]["type"] == "validation_error"


# ----- capacity --------------------------------------------------------------------------------------


def test_capacity_runs_out_per_sector_and_comes_back_after_delete() -> None:
    with served_fal() as (sandbox, client):
        stock = sandbox.stock[("gpu_8x_h100_sxm5", "sector_1")]
        made = [create(client, "k1", {**EIGHT_X, "sector": "sector_1"}) for _ in range(stock)]
        assert all(r.status_code == 201 for r in made)
        refused = create(client, "k1", {**EIGHT_X, "sector": "sector_1"})
        assert refused.status_code == 400
        assert refused.json()["error"]["type"] == "validation_error"
        assert "Insufficient capacity" in refused.json()["error"]["message"]
        assert create(client, "k1", {**EIGHT_X, "sector": "sector_2"}).status_code == 201  # other sectors unaffected
        client.delete(f"{INSTANCES}/{made[0].json()['id']}", headers=key_headers("k1"))
        assert create(client, "k1", {**EIGHT_X, "sector": "sector_1"}).status_code == 201
        assert len(state(client)["creates"]) == stock + 2


def test_1x_capacity_is_shared_by_all_accounts() -> None:
    with served_fal() as (sandbox, client):
        stock = sandbox.stock[("gpu_1x_h100_sxm5", None)]
        for n in range(stock):
            assert create(client, f"k{n}").status_code == 201
        refused = create(client, "late")
        assert refused.status_code == 400 and "Insufficient capacity" in refused.json()["error"]["message"]


# ----- rate limits -----------------------------------------------------------------------------------


def test_rate_limit_answers_429_rate_limited_with_retry_after_per_key() -> None:
    with served_fal(rate_limit=(0.001, 2.0)) as (sandbox, client):
        statuses = [client.get(INSTANCES, headers=key_headers("k1")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = client.get(INSTANCES + "/inst_x", headers=key_headers("k1"))  # one bucket for all routes
        assert limited.status_code == 429
        assert limited.json() == {"error": {"type": "rate_limited", "message": "Rate limit exceeded"}}
        assert int(limited.headers["Retry-After"]) >= 1
        assert client.get(INSTANCES, headers=key_headers("k2")).status_code == 200
        set_config(client, rate_limits=False)
        assert client.get(INSTANCES, headers=key_headers("k1")).status_code == 200
        assert state(client)["rate_limited"] == 2


# ----- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        ("429", 429, "Rate limit exceeded"),
        ("500", 500, "An unexpected error occurred"),
        ("503", 503, "Service temporarily unavailable"),
        ("hang", 504, "Upstream request timed out"),
    ],
)
def test_generic_faults_answer_in_fals_envelope(fault: str, status: int, message: str) -> None:
    with served_fal(SandboxConfig(seed=7, offers=100, hang_seconds=0.1, faults={fault: 1.0})) as (_, client):
        for method, path in ROUTES:
            response = client.request(method, path, headers=key_headers("k1"), json=ONE_X if method == "POST" else None)
            assert response.status_code == status
            assert_valid("error", response.json())
            assert response.json()["error"]["message"] == message
        assert state(client)["injected"][fault] == len(ROUTES)
        assert state(client)["creates"] == []


def test_server_errors_carry_a_request_id() -> None:
    with served_fal(SandboxConfig(seed=7, offers=100, faults={"500": 1.0})) as (_, client):
        error = client.get(INSTANCES, headers=key_headers("k1")).json()["error"]
        assert error["type"] == "server_error" and error["request_id"].startswith("req_")


def test_lost_create_is_committed_and_the_key_replays_it() -> None:
    with served_fal(SandboxConfig(seed=7, offers=100, hang_seconds=0.1)) as (_, client):
        set_faults(client, {"lost": 1.0})
        lost = create(client, "k1", idem="lost-1")
        assert lost.status_code == 502 and "Bad Gateway" in lost.text
        truth = state(client)
        assert len(truth["creates"]) == 1 and truth["creates"][0]["marker"] == "lost-1"
        set_faults(client, {})
        replay = create(client, "k1", idem="lost-1")
        assert replay.status_code == 201 and replay.json()["id"] == truth["creates"][0]["instance_id"]
        assert len(state(client)["creates"]) == 1


def test_lost_is_drawn_only_on_create_and_malformed_only_on_list() -> None:
    with served_fal(SandboxConfig(seed=7, offers=100, hang_seconds=0.1, faults={"lost": 1.0, "malformed": 1.0})) as (_, client):
        assert client.get(INSTANCES + "/inst_x", headers=key_headers("k1")).status_code == 404
        assert client.delete(INSTANCES + "/inst_x", headers=key_headers("k1")).status_code == 404
        assert state(client)["injected"]["lost"] == 0 and state(client)["injected"]["malformed"] == 0


def _malformed_kind(response: httpx.Response) -> str:
    assert response.status_code == 200
    try:
        body = response.json()
    except json.JSONDecodeError:
        return "truncated"
    if "instances" not in body:
        return "wrong-shape"
    if body["has_more"] and body["next_cursor"] is None:
        return "more-without-cursor"
    return "valid"


def test_malformed_lists_come_in_every_variant() -> None:
    config = SandboxConfig(seed=7, offers=100, rate_limits=False, faults={"malformed": 1.0})
    with served_fal(config) as (_, client):
        create(client, "k1")
        kinds = {_malformed_kind(client.get(INSTANCES, headers=key_headers("k1"))) for _ in range(20)}
        assert kinds == {"truncated", "wrong-shape", "more-without-cursor"}
        assert state(client)["injected"]["malformed"] == 20


def test_preempted_instances_vanish_like_deleted_ones() -> None:
    with served_fal(SandboxConfig(seed=7, offers=100, ready_after=10.0, faults={"preempt": 1.0})) as (_, client):
        instance_id = create(client, "k1").json()["id"]
        advance(client, 10 + 60)
        assert client.get(f"{INSTANCES}/{instance_id}", headers=key_headers("k1")).json() == NOT_FOUND_BODY
        assert client.get(INSTANCES, headers=key_headers("k1")).json()["instances"] == []
        assert client.delete(f"{INSTANCES}/{instance_id}", headers=key_headers("k1")).status_code == 404
        assert [i["phase"] for i in state(client)["instances"]] == ["preempted"]


# ----- determinism -----------------------------------------------------------------------------------


def _run_script(seed: int) -> tuple[Any, ...]:
    config = SandboxConfig(seed=seed, offers=100, rate_limits=False, faults={"500": 0.3, "429": 0.2})
    with served_fal(config) as (sandbox, client):
        statuses = [client.get(INSTANCES + "/inst_x", headers=key_headers("k1")).status_code for _ in range(15)]
        set_faults(client, {})
        made = [create(client, "k1", body).json() for body in (ONE_X, EIGHT_X, ONE_X)]
        return sandbox.stock, sandbox.sector_regions, statuses, made


def test_same_seed_same_inventory_and_fault_sequence() -> None:
    first, again, other = _run_script(11), _run_script(11), _run_script(12)
    assert first == again
    assert {500, 429, 404} <= set(first[2])
    assert [m["id"] for m in first[3]] != [m["id"] for m in other[3]]


def test_sandbox_constructs_from_config_alone() -> None:
    sandbox = FalSandbox(SandboxConfig(seed=1))
    assert sandbox.rate_limits == {"compute": (10.0, 10.0)}
    assert set(sandbox.stock) == {("gpu_1x_h100_sxm5", None)} | {("gpu_8x_h100_sxm5", f"sector_{n}") for n in (1, 2, 3)}
