"""Conformance of the Nebula sandbox to Nebula's documented Platform API, over HTTP on loopback:
routes, envelopes, fields, paging, auth, per-account isolation, lifecycle (by the sandbox clock),
every error body we render, every fault mode, and determinism by seed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from gpusupply.sandbox import nebula as neb

from .nebula_helpers import (
    API,
    DOC_DELETE,
    DOC_DELETED_INSTANCES,
    DOC_DETAIL,
    DOC_IMAGES,
    DOC_INSTANCES,
    DOC_PRODUCTS,
    DOC_SSH_KEY_CREATED,
    DOC_SSH_KEYS,
    IMAGE,
    INSTANCE_DETAIL,
    INSTANCE_ROW,
    OTHER_SSH_PUBLIC_KEY,
    PRODUCT,
    SSH_KEY,
    SSH_PUBLIC_KEY,
    advance,
    bearer,
    create_body,
    create_instance,
    envelope_problems,
    failed_body_problems,
    image_for,
    products,
    register_ssh_key,
    serve,
    set_faults,
    shape_problems,
    state,
)

KEY = "ak_alice"
READY = 30.0


@pytest.fixture
def nebula():
    """A sandbox of the test's own: for tests that set faults, move the clock or read the ledger."""
    with serve(ready_after=READY) as served:
        yield served


@pytest.fixture(scope="module")
def client() -> httpx.Client:
    """One sandbox for the tests that change nothing global; each uses an account of its own."""
    with serve(ready_after=READY) as (_, shared):
        yield shared


@pytest.fixture
def key() -> str:
    return f"ak_{uuid.uuid4().hex}"


def list_rows(client: httpx.Client, key: str, path: str = "computing/instances", **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/{path}", headers=bearer(key), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def detail(client: httpx.Client, key: str, instance_id: str) -> httpx.Response:
    return client.get(f"{API}/computing/instance/{instance_id}", headers=bearer(key))


def status_of(client: httpx.Client, key: str, instance_id: str) -> str:
    response = detail(client, key, instance_id)
    assert response.status_code == 200, response.text
    return response.json()["data"][0]["status"]


# ----- the validators themselves accept the documented examples ----------------------------------


@pytest.mark.parametrize(
    ("body", "items", "spec"),
    [
        (DOC_PRODUCTS, lambda b: [p for f in b["data"].values() for ps in f.values() for p in ps], PRODUCT),
        (DOC_IMAGES, lambda b: [i for imgs in b["data"].values() for i in imgs], IMAGE),
        (DOC_INSTANCES, lambda b: b["data"], INSTANCE_ROW),
        (DOC_DELETED_INSTANCES, lambda b: b["data"], INSTANCE_ROW),
        (DOC_DETAIL, lambda b: b["data"], INSTANCE_DETAIL),
        (DOC_SSH_KEYS, lambda b: b["data"]["ssh_keys"], SSH_KEY),
        (DOC_SSH_KEY_CREATED, lambda b: [b["data"]], SSH_KEY),
        (DOC_DELETE, lambda b: [], {}),
    ],
    ids=["products", "images", "instances", "deleted", "detail", "ssh-keys", "ssh-key-created", "delete"],
)
def test_shape_specs_accept_the_documented_examples(body, items, spec) -> None:
    assert envelope_problems(body) == []
    for item in items(body):
        assert shape_problems(item, spec) == []


# ----- catalog -----------------------------------------------------------------------------------


def test_products_are_nested_by_region_then_family_with_documented_fields(client, key) -> None:
    body = list_rows(client, key, path="computing/products")
    assert envelope_problems(body) == [] and body["message"] == neb.MSG_PRODUCTS
    assert {"CANADA", "US-EAST", "EU-NORTH", "APAC-SINGAPORE"} <= set(body["data"])
    count = 0
    for region, families in body["data"].items():
        for family, items in families.items():
            for product in items:
                count += 1
                assert shape_problems(product, PRODUCT) == [], product
                assert product["region"] == region and product["gpu_type"] == family
                assert product["cycle"] == "hourly" and product["is_available"] == (product["stock"] > 0)
    assert count >= 20
    ids = [p["id"] for p in products(client, key)]
    assert len(ids) == len(set(ids))


def test_images_are_keyed_by_region_and_every_product_has_an_ubuntu_image_in_its_dc(client, key) -> None:
    body = list_rows(client, key, path="computing/images")
    assert envelope_problems(body) == [] and body["message"] == neb.MSG_IMAGES
    for region, images in body["data"].items():
        for image in images:
            assert shape_problems(image, IMAGE) == [] and image["region"] == region and image["os_type"] == "Ubuntu"
    for product in products(client, key):
        assert any(
            i["dc_id"] == product["dc_id"] and "22.04" in i["os_name"] for i in body["data"][product["region"]]
        ), product


# ----- auth and isolation ------------------------------------------------------------------------

VENDOR_ROUTES = [
    ("GET", "computing/products"),
    ("GET", "computing/images"),
    ("POST", "computing/instance"),
    ("GET", "computing/instances"),
    ("GET", "computing/deleted-instances"),
    ("GET", "computing/instance/x1"),
    ("DELETE", "computing/instance/x1"),
    ("GET", "computing/instance/x1/start"),
    ("GET", "computing/instance/x1/stop"),
    ("GET", "computing/instance/x1/reboot"),
    ("GET", "ssh-keys"),
    ("POST", "ssh-keys"),
    ("DELETE", "ssh-keys/1"),
]


@pytest.mark.parametrize(("method", "path"), VENDOR_ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic ak_alice"}, {"Authorization": "ak_alice"}])
def test_every_route_refuses_missing_or_malformed_auth_with_401(client, method, path, headers) -> None:
    response = client.request(method, f"{API}/{path}", headers=headers, json={})
    assert response.status_code == 401
    assert failed_body_problems(response.json(), neb.MSG_UNAUTHORIZED) == []


def test_each_key_is_its_own_account(client, key) -> None:
    row = create_instance(client, key, "alice-box")
    other = f"{key}-other"
    assert list_rows(client, other)["data"] == [] and list_rows(client, other)["total_instance"] == 0
    for method, suffix in [("GET", ""), ("GET", "/start"), ("GET", "/stop"), ("GET", "/reboot"), ("DELETE", "")]:
        response = client.request(method, f"{API}/computing/instance/{row['id']}{suffix}", headers=bearer(other))
        assert response.status_code == 404 and failed_body_problems(response.json(), neb.MSG_INSTANCE_NOT_FOUND) == []
    assert list_rows(client, other, "ssh-keys")["data"] == {"total_ssh_keys": 0, "ssh_keys": []}
    # Alice's SSH key is not Bob's.
    body = {**create_body(client, key, "x"), "instance_name": "bob-box"}
    response = client.post(f"{API}/computing/instance", headers=bearer(other), json=body)
    assert response.status_code == 400 and failed_body_problems(response.json(), neb.MSG_SSH_KEY_NOT_FOUND) == []
    assert [r["host_name"] for r in list_rows(client, key)["data"]] == ["alice-box"]


# ----- create, lifecycle, delete -----------------------------------------------------------------


def test_lifecycle_through_the_sandbox_clock(nebula) -> None:
    sandbox, client = nebula
    body = create_body(client, KEY, "gpusupply-lifecycle")
    response = client.post(f"{API}/computing/instance", headers=bearer(KEY), json=body)
    assert response.status_code == 200
    assert response.json() == {"message": neb.MSG_CREATED, "status": "success"}  # no id, no data

    listed = list_rows(client, KEY)
    assert envelope_problems(listed) == [] and listed["message"] == neb.MSG_INSTANCES and listed["total_instance"] == 1
    row = listed["data"][0]
    assert shape_problems(row, INSTANCE_ROW) == []
    assert row["host_name"] == "gpusupply-lifecycle" and row["status"] == "Creating" and row["public_ipv4"] == ""
    instance_id = row["id"]

    got = detail(client, KEY, instance_id).json()
    assert envelope_problems(got) == [] and got["message"] == neb.MSG_DETAIL
    assert isinstance(got["data"], list) and len(got["data"]) == 1
    assert shape_problems(got["data"][0], INSTANCE_DETAIL) == [] and got["data"][0]["running_time"] == "0.0000 hours"

    advance(client, READY + 1)
    running = detail(client, KEY, instance_id).json()["data"][0]
    assert running["status"] == "Running" and running["public_ipv4"].count(".") == 3
    advance(client, 3600)
    running = detail(client, KEY, instance_id).json()["data"][0]
    hours = float(running["running_time"].split()[0])
    assert hours > 1.0
    assert float(running["total_cost"].lstrip("$")) == pytest.approx(hours * row["price_per_hour"], abs=0.001)

    for action, during, after in [("stop", "Stopping", "Stopped"), ("start", "Starting", "Running"), ("reboot", "Rebooting", "Running")]:
        response = client.get(f"{API}/computing/instance/{instance_id}/{action}", headers=bearer(KEY))
        assert response.status_code == 200 and response.json() == {"message": neb.MSG_ACTIONS[action], "status": "success"}
        assert status_of(client, KEY, instance_id) == during
        advance(client, 2)
        assert status_of(client, KEY, instance_id) == after

    response = client.delete(f"{API}/computing/instance/{instance_id}", headers=bearer(KEY))
    assert response.status_code == 200 and response.json() == {"message": neb.MSG_DELETED, "status": "success"}
    assert list_rows(client, KEY)["data"] == []
    deleted = list_rows(client, KEY, path="computing/deleted-instances")
    assert deleted["message"] == neb.MSG_DELETED_INSTANCES and deleted["total_instance"] == 1
    assert shape_problems(deleted["data"][0], INSTANCE_ROW) == []
    assert deleted["data"][0]["id"] == instance_id and deleted["data"][0]["status"] == "Deleted"
    assert detail(client, KEY, instance_id).status_code == 404
    again = client.delete(f"{API}/computing/instance/{instance_id}", headers=bearer(KEY))
    assert again.status_code == 404 and failed_body_problems(again.json(), neb.MSG_INSTANCE_NOT_FOUND) == []

    truth = state(client)
    assert [c["marker"] for c in truth["creates"]] == ["gpusupply-lifecycle"]
    assert [d["instance_id"] for d in truth["deletes"]] == [instance_id]
    assert truth["creates"][0]["product_id"] == body["product_id"] and truth["creates"][0]["image_id"] == body["image_id"]


def test_container_products_map_ssh_to_a_public_port(nebula) -> None:
    _, client = nebula
    container = next(p for p in products(client, KEY) if p["product_type"] == "Container" and p["stock"] > 0)
    row = create_instance(client, KEY, "box", product=container)
    advance(client, READY + 1)
    got = detail(client, KEY, row["id"]).json()["data"][0]
    public, _, private = got["exposed_ports"].partition(":")
    assert private == "22" and public.isdigit() and got["user_name"] == "root"


@pytest.fixture
def valid(client, key) -> dict[str, Any]:
    return create_body(client, key, "valid-name")


def _mismatched_image(client: httpx.Client, body: dict[str, Any]) -> str:
    product = next(p for p in products(client, KEY) if p["id"] == body["product_id"])
    other = next(p for p in products(client, KEY) if (p["region"], p["dc_id"]) != (product["region"], product["dc_id"]))
    return image_for(client, KEY, other)


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        (lambda c, b: {k: v for k, v in b.items() if k != "instance_name"}, 400, "instance_name is required"),
        (lambda c, b: {k: v for k, v in b.items() if k != "product_id"}, 400, "product_id is required"),
        (lambda c, b: {k: v for k, v in b.items() if k != "image_id"}, 400, "image_id is required"),
        (lambda c, b: {k: v for k, v in b.items() if k != "ssh_key_id"}, 400, "ssh_key_id is required"),
        (lambda c, b: {**b, "instance_name": ""}, 400, "instance_name is required"),
        (lambda c, b: {**b, "instance_name": "x" * 64}, 400, "instance_name must be at most 63 characters"),
        (lambda c, b: {**b, "product_id": 5}, 400, "instance_name, product_id and image_id must be strings"),
        (lambda c, b: {**b, "ssh_key_id": "seventy"}, 400, "ssh_key_id must be a number"),
        (lambda c, b: {**b, "product_id": "expd-nope"}, 404, neb.MSG_PRODUCT_NOT_FOUND),
        (lambda c, b: {**b, "image_id": "exos-nope"}, 400, neb.MSG_IMAGE_NOT_FOUND),
        (lambda c, b: {**b, "image_id": _mismatched_image(c, b)}, 400, neb.MSG_DC_MISMATCH),
        (lambda c, b: {**b, "ssh_key_id": 999999}, 400, neb.MSG_SSH_KEY_NOT_FOUND),
    ],
    ids=["no-name", "no-product", "no-image", "no-key", "empty-name", "long-name", "product-not-string",
         "key-not-number", "unknown-product", "unknown-image", "dc-mismatch", "unknown-key"],
)
def test_create_refusals(client, key, valid, change, status, message) -> None:
    response = client.post(f"{API}/computing/instance", headers=bearer(key), json=change(client, valid))
    assert response.status_code == status
    assert failed_body_problems(response.json(), message) == []
    assert list_rows(client, key)["total_instance"] == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_create_with_a_body_that_is_not_a_json_object_is_400(client, key, raw) -> None:
    response = client.post(f"{API}/computing/instance", headers={**bearer(key), "Content-Type": "application/json"}, content=raw)
    assert response.status_code == 400 and failed_body_problems(response.json(), neb.MSG_INVALID_JSON) == []


def test_ssh_key_id_may_be_a_numeric_string(client, key, valid) -> None:
    response = client.post(f"{API}/computing/instance", headers=bearer(key), json={**valid, "ssh_key_id": str(valid["ssh_key_id"])})
    assert response.status_code == 200


def test_create_takes_stock_and_delete_gives_it_back(nebula) -> None:
    _, client = nebula
    product = min((p for p in products(client, KEY) if p["stock"] > 0), key=lambda p: p["stock"])
    rows = [create_instance(client, KEY, f"box-{n}", product=product) for n in range(product["stock"])]
    emptied = next(p for p in products(client, KEY) if p["id"] == product["id"])
    assert emptied["stock"] == 0 and emptied["is_available"] is False
    response = client.post(f"{API}/computing/instance", headers=bearer(KEY), json=create_body(client, KEY, "one-more", product=product))
    assert response.status_code == 400 and failed_body_problems(response.json(), neb.MSG_OUT_OF_STOCK) == []
    assert client.delete(f"{API}/computing/instance/{rows[0]['id']}", headers=bearer(KEY)).status_code == 200
    assert next(p for p in products(client, KEY) if p["id"] == product["id"])["stock"] == 1


def test_actions_refused_in_the_wrong_state(nebula) -> None:
    _, client = nebula
    row = create_instance(client, KEY, "box")
    url = f"{API}/computing/instance/{row['id']}"
    for action, message in [("stop", neb.MSG_NOT_RUNNING), ("reboot", neb.MSG_NOT_RUNNING), ("start", neb.MSG_NOT_STOPPED)]:
        response = client.get(f"{url}/{action}", headers=bearer(KEY))  # still Creating
        assert response.status_code == 400 and failed_body_problems(response.json(), message) == []
    advance(client, READY + 1)
    response = client.get(f"{url}/start", headers=bearer(KEY))
    assert response.status_code == 400 and failed_body_problems(response.json(), neb.MSG_NOT_STOPPED) == []
    assert client.get(f"{url}/stop", headers=bearer(KEY)).status_code == 200
    advance(client, 2)
    response = client.get(f"{url}/reboot", headers=bearer(KEY))
    assert response.status_code == 400 and failed_body_problems(response.json(), neb.MSG_NOT_RUNNING) == []
    unknown = client.get(f"{url}/explode", headers=bearer(KEY))
    assert unknown.status_code == 404 and failed_body_problems(unknown.json()) == []


# ----- paging ------------------------------------------------------------------------------------


def test_instance_lists_page_with_limit_and_offset(client, key) -> None:
    ids = [create_instance(client, key, f"box-{n}")["id"] for n in range(5)]
    pages = [list_rows(client, key, limit=2, offset=offset) for offset in (0, 2, 4, 6)]
    assert [len(p["data"]) for p in pages] == [2, 2, 1, 0]
    assert all(p["total_instance"] == 5 for p in pages)
    assert [r["id"] for p in pages for r in p["data"]] == ids
    assert [r["id"] for r in list_rows(client, key)["data"]] == ids  # default limit (100) covers them
    for instance_id in ids[:3]:
        client.delete(f"{API}/computing/instance/{instance_id}", headers=bearer(key))
    deleted = list_rows(client, key, path="computing/deleted-instances", limit=2, offset=2)
    assert deleted["total_instance"] == 3 and [r["id"] for r in deleted["data"]] == ids[2:3]


@pytest.mark.parametrize("path", ["computing/instances", "computing/deleted-instances", "ssh-keys"])
@pytest.mark.parametrize("params", [{"limit": "-1"}, {"limit": "0"}, {"limit": "ten"}, {"offset": "-3"}, {"limit": "100000"}])
def test_bad_paging_parameters_are_400(client, key, path, params) -> None:
    response = client.get(f"{API}/{path}", headers=bearer(key), params=params)
    assert response.status_code == 400 and failed_body_problems(response.json(), neb.MSG_BAD_PAGING) == []


# ----- SSH keys ----------------------------------------------------------------------------------


def test_ssh_key_routes(client, key) -> None:
    created = client.post(f"{API}/ssh-keys", headers=bearer(key), json={"key_name": "laptop", "key_data": SSH_PUBLIC_KEY})
    assert created.status_code == 200
    body = created.json()
    assert envelope_problems(body) == [] and body["message"] == neb.MSG_SSH_KEY_CREATED
    assert shape_problems(body["data"], SSH_KEY) == [] and body["data"]["create_time"].isdigit()
    second = register_ssh_key(client, key, OTHER_SSH_PUBLIC_KEY, "desk")

    listed = list_rows(client, key, path="ssh-keys")
    assert listed["message"] == neb.MSG_SSH_KEYS and listed["data"]["total_ssh_keys"] == 2
    for row in listed["data"]["ssh_keys"]:
        assert shape_problems(row, SSH_KEY) == [] and row["create_time"].startswith("EST ")
    page = list_rows(client, key, path="ssh-keys", limit=1, offset=1)["data"]
    assert page["total_ssh_keys"] == 2 and [k["id"] for k in page["ssh_keys"]] == [second]

    deleted = client.delete(f"{API}/ssh-keys/{second}", headers=bearer(key))
    assert deleted.status_code == 200 and deleted.json() == {"status": "success", "message": neb.MSG_SSH_KEY_DELETED, "data": {}}
    again = client.delete(f"{API}/ssh-keys/{second}", headers=bearer(key))
    assert again.status_code == 404 and failed_body_problems(again.json(), neb.MSG_SSH_KEY_NOT_FOUND) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key_data": SSH_PUBLIC_KEY}, "key_name is required"),
        ({"key_name": " ", "key_data": SSH_PUBLIC_KEY}, "key_name is required"),
        ({"key_name": "k"}, neb.MSG_INVALID_SSH_KEY),
        ({"key_name": "k", "key_data": "not a key"}, neb.MSG_INVALID_SSH_KEY),
        ({"key_name": "k", "key_data": "ssh-ed25519 !!!notbase64"}, neb.MSG_INVALID_SSH_KEY),
    ],
)
def test_ssh_key_refusals(client, key, body, message) -> None:
    response = client.post(f"{API}/ssh-keys", headers=bearer(key), json=body)
    assert response.status_code == 400 and failed_body_problems(response.json(), message) == []


# ----- unknown routes and methods ----------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "computing/nothing", 404), ("POST", "computing/products", 405)])
def test_unknown_routes_answer_in_the_envelope(client, method, path, status) -> None:
    response = client.request(method, f"{API}/{path}", headers=bearer(KEY))
    assert response.status_code == status and failed_body_problems(response.json()) == []


def test_admin_routes_keep_their_own_errors(client) -> None:
    response = client.put("/_sandbox/faults", json={"explode": 1})
    assert response.status_code == 400 and "detail" in response.json()


# ----- rate limits -------------------------------------------------------------------------------


def test_rate_limit_answers_429_in_the_envelope_and_can_be_disabled() -> None:
    with serve(rate_limits=True, rate_scale=0.01) as (_, client):
        statuses = []
        for _ in range(8):
            response = client.get(f"{API}/computing/products", headers=bearer(KEY))
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert failed_body_problems(response.json(), neb.MSG_RATE_LIMITED) == []
                assert float(response.headers["Retry-After"]) > 0
        assert statuses[:5] == [200] * 5 and 429 in statuses  # burst of 5, then limited
        assert state(client)["rate_limited"] >= 1
        # Limits are per key: another account is not affected.
        assert client.get(f"{API}/computing/products", headers=bearer("ak_other")).status_code == 200
        assert client.put("/_sandbox/config", json={"rate_limits": False}).status_code == 200
        assert all(client.get(f"{API}/computing/products", headers=bearer(KEY)).status_code == 200 for _ in range(8))


# ----- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status"), [("500", 500), ("503", 503), ("429", 429)])
def test_generic_faults_answer_in_the_envelope(nebula, fault, status) -> None:
    _, client = nebula
    set_faults(client, {fault: 1.0})
    response = client.get(f"{API}/computing/instances", headers=bearer(KEY))
    assert response.status_code == status
    assert failed_body_problems(response.json(), neb.MSG_RATE_LIMITED if status == 429 else neb.MSG_SERVER_ERRORS[status]) == []
    if status == 429:
        assert float(response.headers["Retry-After"]) == pytest.approx(1.0)
    assert state(client)["injected"][fault] == 1


def test_hang_holds_the_request_then_answers_504(nebula) -> None:
    _, client = nebula
    client.put("/_sandbox/config", json={"hang_seconds": 0.2})
    set_faults(client, {"hang": 1.0})
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{API}/computing/products", headers=bearer(KEY), timeout=0.05)
    response = client.get(f"{API}/computing/products", headers=bearer(KEY))
    assert response.status_code == 504 and failed_body_problems(response.json(), neb.MSG_SERVER_ERRORS[504]) == []
    assert state(client)["injected"]["hang"] == 2


def test_lost_create_commits_but_the_answer_never_arrives(nebula) -> None:
    _, client = nebula
    body = create_body(client, KEY, "gpusupply-lost")
    client.put("/_sandbox/config", json={"hang_seconds": 0.2})
    set_faults(client, {"lost": 1.0})
    response = client.post(f"{API}/computing/instance", headers=bearer(KEY), json=body)
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    set_faults(client, {})
    assert [r["host_name"] for r in list_rows(client, KEY)["data"]] == ["gpusupply-lost"]
    truth = state(client)
    assert [c["marker"] for c in truth["creates"]] == ["gpusupply-lost"] and truth["injected"]["lost"] == 1


def test_lost_only_applies_to_creates(nebula) -> None:
    _, client = nebula
    set_faults(client, {"lost": 1.0})
    assert client.get(f"{API}/computing/instances", headers=bearer(KEY)).status_code == 200


@pytest.mark.parametrize("path", ["computing/instances", "computing/deleted-instances", "computing/products", "computing/images", "ssh-keys"])
def test_malformed_lists_cycle_through_truncated_wrong_shape_and_short_bodies(nebula, path) -> None:
    _, client = nebula
    row = create_instance(client, KEY, "box-a")
    create_instance(client, KEY, "box-b")
    client.delete(f"{API}/computing/instance/{row['id']}", headers=bearer(KEY))
    set_faults(client, {"malformed": 1.0})
    bodies = [client.get(f"{API}/{path}", headers=bearer(KEY)) for _ in range(3)]
    assert all(b.status_code == 200 for b in bodies)
    with pytest.raises(json.JSONDecodeError):
        json.loads(bodies[0].text)  # truncated
    wrong = bodies[1].json()["data"]
    assert isinstance(wrong, list) if path in ("computing/products", "computing/images", "ssh-keys") else isinstance(wrong, dict)
    third = bodies[2]
    if path in ("computing/instances", "computing/deleted-instances"):
        short = third.json()
        assert len(short["data"]) < short["total_instance"]
    elif path == "ssh-keys":
        short = third.json()["data"]
        assert len(short["ssh_keys"]) < short["total_ssh_keys"]
    else:
        assert third.headers["content-type"].startswith("text/html")
    assert state(client)["injected"]["malformed"] == 3


def test_malformed_is_not_drawn_on_single_object_routes(nebula) -> None:
    _, client = nebula
    row = create_instance(client, KEY, "box")
    set_faults(client, {"malformed": 1.0})
    assert envelope_problems(detail(client, KEY, row["id"]).json()) == []


def test_preempted_instances_move_to_the_deleted_list(nebula) -> None:
    _, client = nebula
    row = create_instance(client, KEY, "gpusupply-spot")
    set_faults(client, {"preempt": 1.0})
    advance(client, READY + 61)
    assert list_rows(client, KEY)["data"] == []
    gone = list_rows(client, KEY, path="computing/deleted-instances")["data"]
    assert [(r["id"], r["status"]) for r in gone] == [(row["id"], "Deleted")]
    assert detail(client, KEY, row["id"]).status_code == 404
    assert client.delete(f"{API}/computing/instance/{row['id']}", headers=bearer(KEY)).status_code == 404
    assert [i["phase"] for i in state(client)["instances"]] == ["preempted"]


# ----- determinism -------------------------------------------------------------------------------


def _catalog(seed: int) -> tuple[Any, Any]:
    with serve(seed=seed) as (_, client):
        return list_rows(client, KEY, path="computing/products")["data"], list_rows(client, KEY, path="computing/images")["data"]


def test_the_same_seed_gives_the_same_catalog() -> None:
    assert _catalog(7) == _catalog(7)
    assert _catalog(7) != _catalog(8)


def _fault_sequence(seed: int) -> list[int]:
    with serve(seed=seed, faults={"500": 0.3, "503": 0.2, "429": 0.2}) as (_, client):
        return [client.get(f"{API}/computing/instances", headers=bearer(KEY)).status_code for _ in range(25)]


def test_the_same_seed_gives_the_same_fault_sequence() -> None:
    first = _fault_sequence(3)
    assert first == _fault_sequence(3)
    assert {200, 500} <= set(first)
    assert first != _fault_sequence(4)


def test_the_same_seed_gives_the_same_instance_ids() -> None:
    def ids() -> list[str]:
        with serve(seed=5) as (_, client):
            return [create_instance(client, KEY, f"box-{n}")["id"] for n in range(3)]

    assert ids() == ids()
