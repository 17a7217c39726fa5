"""The Lambda Cloud sandbox: every route's answers, successes and errors, validate against Lambda's
OpenAPI document 1.8.3 (schemathesis over the document; the error envelope of its description for
the statuses it leaves undescribed); auth forms; documented rate limits on by default; a seeded
inventory; capacity; and the fault modes."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
import pytest

from gpusupply.sandbox import lambdalabs as sim
from gpusupply.sandbox.common import SandboxConfig

from .lambda_helpers import (
    API,
    SSH_PUBLIC_KEY,
    add_key,
    bearer,
    conformance_problems,
    launch_body,
    offered,
    serve,
)

KEY = "secret_sandbox_key"
OTHER_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEzJ28u6bseeps2CyOLqKZ/tlghzlrmY7oCigoJ07/og other@gpusupply"


def conforms(path: str, method: str, response: httpx.Response, status: int) -> httpx.Response:
    assert response.status_code == status, response.text
    assert conformance_problems(path, method, response) == []
    return response


def test_every_route_answers_as_the_openapi_document_says() -> None:
    """Each route driven to each of its answers; every answer is checked against the document."""
    with serve() as (sandbox, client):
        h = bearer(KEY)
        seen: set[tuple[str, str, int]] = set()

        def check(path: str, method: str, response: httpx.Response, status: int) -> httpx.Response:
            seen.add((path, method, status))
            return conforms(f"{API}{path}", method, response, status)

        # instance types: success, no key, a key of another scheme
        check("/instance-types", "GET", client.get(f"{API}/instance-types", headers=h), 200)
        check("/instance-types", "GET", client.get(f"{API}/instance-types"), 401)
        check("/instance-types", "GET", client.get(f"{API}/instance-types", headers={"Authorization": f"Token {KEY}"}), 401)
        # SSH keys: add, list, refuse, delete
        key = check("/ssh-keys", "POST", add_key(client, KEY), 200).json()["data"]
        check("/ssh-keys", "POST", add_key(client, KEY), 400)  # the name is taken
        check("/ssh-keys", "POST", add_key(client, KEY, name="bad", public_key="not a key"), 400)
        check("/ssh-keys", "POST", client.post(f"{API}/ssh-keys", headers=h, content=b"{"), 400)
        check("/ssh-keys", "POST", client.post(f"{API}/ssh-keys", json={"name": "k", "public_key": SSH_PUBLIC_KEY}), 401)
        check("/ssh-keys", "GET", client.get(f"{API}/ssh-keys", headers=h), 200)
        check("/ssh-keys", "GET", client.get(f"{API}/ssh-keys"), 401)
        spare = add_key(client, KEY, name="spare", public_key=OTHER_PUBLIC_KEY).json()["data"]
        check("/ssh-keys/{id}", "DELETE", client.delete(f"{API}/ssh-keys/{spare['id']}", headers=h), 200)
        check("/ssh-keys/{id}", "DELETE", client.delete(f"{API}/ssh-keys/{spare['id']}", headers=h), 400)
        check("/ssh-keys/{id}", "DELETE", client.delete(f"{API}/ssh-keys/x"), 401)
        # launch: success and every refusal
        instance_type, region = offered(client, KEY)[0]
        launched = check("/instance-operations/launch", "POST",
                         client.post(f"{API}/instance-operations/launch", headers=h, json=launch_body(instance_type, region, key_name=key["name"], user_data="#cloud-config\n")), 200)
        instance_id = launched.json()["data"]["instance_ids"][0]
        for bad in (launch_body(instance_type, "mars-1"), launch_body(instance_type, region, name="x" * 65),
                    {**launch_body(instance_type, region), "ssh_key_names": ["a", "b"]}, {**launch_body(instance_type, region), "quantity": 2}):
            check("/instance-operations/launch", "POST", client.post(f"{API}/instance-operations/launch", headers=h, json=bad), 400)
        for missing in (launch_body("gpu_1x_nothing", region), launch_body(instance_type, region, key_name="nobody"),
                        launch_body(instance_type, region, file_system_names=["fs"])):
            check("/instance-operations/launch", "POST", client.post(f"{API}/instance-operations/launch", headers=h, json=missing), 404)
        sold_out = next(name for name in sandbox.types if not sandbox.regions_with_capacity(name))
        check("/instance-operations/launch", "POST", client.post(f"{API}/instance-operations/launch", headers=h, json=launch_body(sold_out, region)), 400)
        sandbox.instance_quota = 1
        quota = check("/instance-operations/launch", "POST", client.post(f"{API}/instance-operations/launch", headers=h, json=launch_body(instance_type, region)), 400)
        assert quota.json()["error"]["code"] == "global/quota-exceeded"
        sandbox.instance_quota = sim.DEFAULT_INSTANCE_QUOTA
        check("/instance-operations/launch", "POST", client.post(f"{API}/instance-operations/launch", json=launch_body(instance_type, region)), 401)
        # instances: booting, active, restarting, preempted; not found
        check("/instances", "GET", client.get(f"{API}/instances", headers=h), 200)
        check("/instances/{id}", "GET", client.get(f"{API}/instances/{instance_id}", headers=h), 200)
        sandbox.clock.advance(31)
        active = check("/instances/{id}", "GET", client.get(f"{API}/instances/{instance_id}", headers=h), 200).json()["data"]
        assert active["status"] == "active" and active["ip"]
        check("/instances", "GET", client.get(f"{API}/instances", headers=h), 200)
        check("/instances", "GET", client.get(f"{API}/instances"), 401)
        check("/instances/{id}", "GET", client.get(f"{API}/instances/nope", headers=h), 404)
        check("/instances/{id}", "GET", client.get(f"{API}/instances/nope"), 401)
        check("/instances/{id}", "POST", client.post(f"{API}/instances/{instance_id}", headers=h, json={"name": "renamed"}), 200)
        check("/instances/{id}", "POST", client.post(f"{API}/instances/{instance_id}", headers=h, json={"name": 7}), 400)
        check("/instances/{id}", "POST", client.post(f"{API}/instances/nope", headers=h, json={"name": "x"}), 404)
        check("/instances/{id}", "POST", client.post(f"{API}/instances/nope", json={"name": "x"}), 401)
        ids = {"instance_ids": [instance_id]}
        check("/instance-operations/restart", "POST", client.post(f"{API}/instance-operations/restart", headers=h, json=ids), 200)
        check("/instance-operations/restart", "POST", client.post(f"{API}/instance-operations/restart", headers=h, json={"instance_ids": ["nope"]}), 404)
        check("/instance-operations/restart", "POST", client.post(f"{API}/instance-operations/restart", json=ids), 401)
        check("/instances/{id}", "GET", client.get(f"{API}/instances/{instance_id}", headers=h), 200)  # booting again
        sandbox.arm("phantom_404", instance_id)  # "not found" although it exists: still the documented 404
        check("/instances/{id}", "GET", client.get(f"{API}/instances/{instance_id}", headers=h), 404)
        sandbox.arm("ignored_delete", instance_id)  # acknowledged, nothing terminated
        check("/instance-operations/terminate", "POST", client.post(f"{API}/instance-operations/terminate", headers=h, json={"instance_ids": [instance_id]}), 200)
        assert sandbox.visible_instance(KEY, instance_id) is not None
        sandbox.faults.faults = {"preempt": 1.0}
        sandbox.clock.advance(61)
        preempted = check("/instances", "GET", client.get(f"{API}/instances", headers=h), 200).json()["data"]
        assert [i["status"] for i in preempted] == ["preempted"]
        sandbox.faults.faults = {}
        check("/instance-operations/terminate", "POST", client.post(f"{API}/instance-operations/terminate", json=ids), 401)
        check("/instance-operations/terminate", "POST", client.post(f"{API}/instance-operations/terminate", headers=h, json=ids), 200)
        check("/instance-operations/terminate", "POST", client.post(f"{API}/instance-operations/terminate", headers=h, json=ids), 404)
        # undocumented statuses: 429, 500, 503 and the 504 of a hang carry the error envelope
        for fault, status in (("429", 429), ("500", 500), ("503", 503), ("hang", 504)):
            sandbox.faults.faults = {fault: 1.0}
            check("/instances", "GET", client.get(f"{API}/instances", headers=h), status)
        sandbox.faults.faults = {}

        documented = {(path.removeprefix(API), method.upper(), int(status))
                      for path, ops in sandbox_routes().items() for method, op in ops.items() for status in op["responses"]}
        missing = {entry for entry in documented if entry[2] != 403} - seen  # 403: inactive accounts are not simulated
        assert missing == set(), f"answers never checked: {sorted(missing)}"


def sandbox_routes() -> dict[str, dict[str, dict]]:
    """The document's operations this sandbox serves."""
    from .lambda_helpers import document

    served = {"/instance-types", "/instance-operations/launch", "/instances", "/instances/{id}",
              "/instance-operations/restart", "/instance-operations/terminate", "/ssh-keys", "/ssh-keys/{id}"}
    return {path: ops for path, ops in document()["paths"].items() if path.removeprefix(API) in served}


def test_the_validator_rejects_answers_that_break_the_document() -> None:
    request = httpx.Request("GET", f"http://sandbox{API}/instances")

    def response(status: int, body: object) -> httpx.Response:
        answer = httpx.Response(status, json=body, request=request)
        answer.elapsed = timedelta(0)
        return answer

    good = {"id": "a", "status": "active", "ssh_key_names": [], "file_system_names": [], "region": {"name": "us-west-1", "description": "x"},
            "instance_type": {"name": "t", "description": "d", "gpu_description": "g", "price_cents_per_hour": 1,
                              "specs": {"vcpus": 1, "memory_gib": 1, "storage_gib": 1, "gpus": 1}},
            "actions": {a: {"available": True} for a in ("migrate", "rebuild", "restart", "cold_reboot", "terminate")}}
    assert conformance_problems(f"{API}/instances", "GET", response(200, {"data": [good]})) == []
    for bad in ({"data": [{**good, "status": "running"}]}, {"data": [{**good, "region": {"name": "mars-1", "description": "x"}}]},
                {"data": [good], "extra": 1}, {"data": {"a": good}}):
        assert conformance_problems(f"{API}/instances", "GET", response(200, bad)) != [], bad
    assert conformance_problems(f"{API}/instances", "GET", response(401, {"error": {"code": "global/invalid-api-key", "message": "m"}})) != []
    assert conformance_problems(f"{API}/instances", "GET", response(429, {"error": {"message": "no code"}})) != []
    assert conformance_problems(f"{API}/instances", "GET", response(500, {"error": {"code": "provider/x", "message": "m"}})) != []


@pytest.mark.parametrize(
    "header",
    [f"Bearer {KEY}", "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(), f"Basic {KEY}"],
    ids=["bearer", "basic-base64-key-colon", "basic-bare-key"],
)
def test_every_documented_auth_form_names_the_same_account(header) -> None:
    with serve() as (sandbox, client):
        assert add_key(client, KEY).status_code == 200
        names = client.get(f"{API}/ssh-keys", headers={"Authorization": header}).json()["data"]
        assert [k["name"] for k in names] == ["laptop"]
        wrong = base64.b64encode(f"{KEY}:password".encode()).decode()
        assert client.get(f"{API}/ssh-keys", headers={"Authorization": f"Basic {wrong}"}).status_code == 401


def test_rate_limits_are_on_by_default_at_the_documented_rates() -> None:
    config = SandboxConfig()
    assert config.rate_limits and sim.LambdaSandbox(config).rate_limits == {"api": (1.0, 2.0), "launch": (1 / 12, 2.0)}
    with serve(rate_limits=True) as (sandbox, client):
        sandbox.rate_clock = lambda: 1000.0  # stopped: the burst is refused however slowly the machine sends it
        answers = [client.get(f"{API}/ssh-keys", headers=bearer(KEY)) for _ in range(3)]  # burst 2, then 1/s
        assert [a.status_code for a in answers[:2]] == [200, 200] and answers[2].status_code == 429
        retry_after = float(answers[2].headers["Retry-After"])
        assert 0 < retry_after <= 1.0
        assert answers[2].json()["error"]["code"] == "global/rate-limit-exceeded"


def test_launch_has_its_own_limit_of_one_per_12_seconds() -> None:
    with serve(rate_limits=True) as (sandbox, client):
        sandbox.rate_limits = {"api": (1000.0, 100.0), "launch": sim.DEFAULT_RATE_LIMITS["launch"]}  # only launch's own limit
        sandbox.rate_clock = lambda: 1000.0  # stopped: the third launch is refused however slowly the machine runs
        assert add_key(client, KEY).status_code == 200
        instance_type, region = max(offered(client, KEY), key=lambda p: sandbox.capacity[p])
        answers = [client.post(f"{API}/instance-operations/launch", headers=bearer(KEY), json=launch_body(instance_type, region)) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert 0 < float(answers[2].headers["Retry-After"]) <= 12.0
        assert len(sandbox.creates) == 2  # the refused one launched nothing


def test_the_inventory_is_seeded() -> None:
    assert sim.build_capacity(3) == sim.build_capacity(3)
    assert sim.build_capacity(3) != sim.build_capacity(4)
    for seed in range(25):
        capacity = sim.build_capacity(seed)
        for name in sim.ALWAYS_OFFERED:
            assert any(t == name and r.startswith("us-") and n > 0 for (t, r), n in capacity.items()), (seed, name)
        assert not any(t in sim.NEVER_OFFERED for t, _ in capacity)
        assert {r for _, r in capacity} <= set(sim.REGIONS) <= set(sim.PUBLIC_REGIONS)


def test_capacity_is_taken_by_a_launch_and_given_back_by_terminate() -> None:
    with serve() as (sandbox, client):
        assert add_key(client, KEY).status_code == 200
        pair = min(offered(client, KEY), key=lambda p: (sandbox.capacity[p], p))
        ids = []
        for _ in range(sandbox.capacity[pair]):
            answer = client.post(f"{API}/instance-operations/launch", headers=bearer(KEY), json=launch_body(*pair))
            ids += answer.json()["data"]["instance_ids"]
        assert pair not in offered(client, KEY)
        refused = client.post(f"{API}/instance-operations/launch", headers=bearer(KEY), json=launch_body(*pair))
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "instance-operations/launch/insufficient-capacity"
        # all or nothing: one unknown id terminates none
        assert client.post(f"{API}/instance-operations/terminate", headers=bearer(KEY), json={"instance_ids": [ids[0], "nope"]}).status_code == 404
        assert len(client.get(f"{API}/instances", headers=bearer(KEY)).json()["data"]) == len(ids)
        done = client.post(f"{API}/instance-operations/terminate", headers=bearer(KEY), json={"instance_ids": ids})
        assert [i["status"] for i in done.json()["data"]["terminated_instances"]] == ["terminating"] * len(ids)
        assert pair in offered(client, KEY) and client.get(f"{API}/instances", headers=bearer(KEY)).json()["data"] == []


def test_accounts_are_separate() -> None:
    with serve() as (_, client):
        assert add_key(client, KEY).status_code == 200
        pair = offered(client, KEY)[0]
        instance_id = client.post(f"{API}/instance-operations/launch", headers=bearer(KEY), json=launch_body(*pair)).json()["data"]["instance_ids"][0]
        other = bearer("another_key")
        assert client.get(f"{API}/instances", headers=other).json()["data"] == []
        assert client.get(f"{API}/instances/{instance_id}", headers=other).status_code == 404
        assert client.post(f"{API}/instance-operations/launch", headers=other, json=launch_body(*pair)).status_code == 404  # not their key


def test_a_lost_launch_is_committed() -> None:
    with serve(faults={"lost": 1.0}, hang_seconds=0.1) as (sandbox, client):
        sandbox.faults.faults = {}
        assert add_key(client, KEY).status_code == 200
        sandbox.faults.faults = {"lost": 1.0}
        answer = client.post(f"{API}/instance-operations/launch", headers=bearer(KEY), json=launch_body(*offered(client, KEY)[0], name="gpusupply-lost"))
        assert answer.status_code == 502 and "text/html" in answer.headers["content-type"]
        sandbox.faults.faults = {}
        rows = client.get(f"{API}/instances", headers=bearer(KEY)).json()["data"]
        assert [r["name"] for r in rows] == ["gpusupply-lost"] and sandbox.faults.injected["lost"] == 1


def test_malformed_lists_cycle_through_three_shapes() -> None:
    with serve(faults={"malformed": 1.0}) as (_, client):
        answers = [client.get(f"{API}/instances", headers=bearer(KEY)) for _ in range(3)]
        assert all(a.status_code == 200 for a in answers)
        with pytest.raises(ValueError):
            answers[0].json()
        assert answers[1].json() == {"data": {"items": []}}
        assert answers[2].text.startswith("<html>")


def test_the_cli_and_registry_know_the_sandbox() -> None:
    from gpusupply.sandbox.mode import sandbox_class
    from gpusupply.settings import VENDORS

    assert "lambda" in VENDORS and sandbox_class("lambda") is sim.LambdaSandbox
