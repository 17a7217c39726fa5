"""The RunPod sandbox over HTTP on loopback: GraphQL answers and error shapes, rate limits on by
default, every fault mode's wire form, determinism by seed. (The official SDK against it:
test_runpod_sdk.py; our adapter against it: tests/vendors/test_runpod.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import parse

from gpusupply.sandbox import runpod as sim
from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.runner import ServerThread
from gpusupply.vendors.runpod import LIMITS, LIST_PODS, catalog_query

KEY = "rp_sandbox_test_key"
DEPLOY = 'mutation { podFindAndDeployOnDemand(input: {name: "n", imageName: "runpod/base", gpuTypeId: "%s", gpuCount: %d}) { id desiredStatus } }'


@pytest.fixture
def served() -> Iterator[tuple[sim.RunPodSandbox, httpx.Client]]:
    sandbox = sim.RunPodSandbox(SandboxConfig(seed=4, ready_after=0.0, hang_seconds=0.2))
    with ServerThread(sandbox.create_app()) as server, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield sandbox, client


def post(client: httpx.Client, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
    return client.post("/graphql", json={"query": query, "variables": variables or {}})


def test_the_inventory_is_deterministic_per_seed_and_always_offers_h100_and_a100() -> None:
    first, again, other = sim.build_inventory(1), sim.build_inventory(1), sim.build_inventory(2)
    assert first == again and first != other
    for seed in range(20):
        sandbox = sim.RunPodSandbox(SandboxConfig(seed=seed))
        for gpu in ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"):
            assert sandbox.free_machines(gpu, 1, cloud="SECURE", country="US"), (seed, gpu)


def test_rate_limits_are_on_by_default_and_answered_in_graphql_form() -> None:
    sandbox = sim.RunPodSandbox(SandboxConfig(seed=1))
    assert sandbox.config.rate_limits and sandbox.rate_limits == LIMITS.routes
    sandbox.rate_clock = lambda: 1000.0  # stopped: the burst is refused however slowly the machine sends it
    with ServerThread(sandbox.create_app()) as server, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        burst = int(LIMITS.routes["list"][1])
        answers = [post(client, LIST_PODS) for _ in range(burst + 1)]
    assert [a.status_code for a in answers[:burst]] == [200] * burst
    limited = answers[-1]
    assert limited.status_code == 429 and float(limited.headers["Retry-After"]) > 0
    assert limited.json() == {"errors": [{"message": sim.MSG_RATE_LIMITED, "extensions": {"code": "RATE_LIMITED"}}]}


@pytest.mark.parametrize(
    ("query", "group"),
    [(LIST_PODS, "list"), (catalog_query(), "catalog"), ("mutation { podTerminate(input: {podId: \"x\"}) }", "action"),
     ("query Q($p: String!) { pod(input: {podId: $p}) { id } }", "read"), (DEPLOY % ("x", 1), "create"), ("{ __typename }", "other")],
)
def test_operation_groups(query, group) -> None:
    assert sim.operation_group(parse(query), None) == group


def test_catalog_answers_the_adapters_document(served) -> None:
    sandbox, client = served
    answer = post(client, catalog_query())
    assert answer.status_code == 200 and "errors" not in answer.json()
    gpus = {g["id"]: g for g in answer.json()["data"]["gpuTypes"]}
    assert set(gpus) == set(sandbox.gpu_types)
    h100 = gpus["NVIDIA H100 80GB HBM3"]
    assert h100["secure1"]["stockStatus"] in ("High", "Medium", "Low") and h100["secure1"]["uninterruptablePrice"] == h100["securePrice"]
    assert h100["secure1"]["minimumBidPrice"] == h100["secureSpotPrice"]
    for gpu in gpus.values():  # an entry per count up to the largest machine of the cloud, none above
        for cloud in ("secure", "community"):
            largest = sandbox.max_count(gpu["id"], cloud.upper()) if gpu[f"{cloud}Cloud"] else 0
            assert [n for n in range(1, 9) if gpu[f"{cloud}{n}"] is not None] == list(range(1, largest + 1)), (gpu["id"], cloud)


def test_deploy_takes_capacity_and_no_capacity_is_an_error_under_200(served) -> None:
    sandbox, client = served
    gpu = "NVIDIA H100 80GB HBM3"
    largest = max(free for free, _ in sandbox.free_machines(gpu, 1, cloud=None))
    ok = post(client, DEPLOY % (gpu, largest))
    assert ok.status_code == 200 and ok.json()["data"]["podFindAndDeployOnDemand"]["desiredStatus"] == "RUNNING"
    too_big = post(client, DEPLOY % (gpu, 9))
    assert too_big.status_code == 200 and too_big.json()["data"] == {"podFindAndDeployOnDemand": None}
    assert too_big.json()["errors"][0]["message"] == sim.MSG_NO_CAPACITY and too_big.json()["errors"][0]["path"] == ["podFindAndDeployOnDemand"]
    unknown = post(client, DEPLOY % ("NVIDIA Imaginary", 1))
    assert unknown.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_faults_in_wire_form(served) -> None:
    sandbox, client = served
    sandbox.faults.faults = {"500": 1.0}
    failed = post(client, LIST_PODS)
    assert failed.status_code == 500 and failed.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    sandbox.faults.faults = {"lost": 1.0}
    lost = post(client, DEPLOY % ("NVIDIA H100 80GB HBM3", 1))
    assert lost.status_code == 502 and "text/html" in lost.headers["content-type"]
    assert len(sandbox.state()["creates"]) == 1  # committed, answer lost
    sandbox.faults.faults = {"malformed": 1.0}
    truncated = post(client, LIST_PODS)
    with pytest.raises(ValueError):
        truncated.json()
    assert isinstance(post(client, LIST_PODS).json()["data"]["myself"]["pods"], dict)  # a list that is an object
    broken = post(client, LIST_PODS).json()["data"]["myself"]["pods"]
    assert "id" not in broken[0]
    sandbox.faults.faults = {"hang": 1.0}
    assert post(client, LIST_PODS).status_code == 504  # after hang_seconds


def test_only_interruptible_pods_are_preempted_and_they_stay_listed(served) -> None:
    sandbox, client = served
    gpu = "NVIDIA H100 80GB HBM3"
    rent = 'mutation { podRentInterruptable(input: {bidPerGpu: %f, name: "s", imageName: "i", gpuTypeId: "%s", cloudType: SECURE}) { id podType } }'
    spot = post(client, rent % (sandbox.gpu_types[gpu].secure_spot, gpu)).json()["data"]["podRentInterruptable"]
    on_demand = post(client, DEPLOY % (gpu, 1)).json()["data"]["podFindAndDeployOnDemand"]
    low = post(client, rent % (sandbox.gpu_types[gpu].secure_spot / 2, gpu)).json()
    assert spot["podType"] == "INTERRUPTABLE" and "minimum bid" in low["errors"][0]["message"]
    sandbox.faults.faults = {"preempt": 1.0}
    sandbox.clock.advance(61)
    pods = {p["id"]: p for p in post(client, LIST_PODS).json()["data"]["myself"]["pods"]}
    assert (pods[spot["id"]]["desiredStatus"], pods[spot["id"]]["gpuCount"], pods[spot["id"]]["costPerHr"]) == ("EXITED", 0, 0.0)
    assert pods[on_demand["id"]]["desiredStatus"] == "RUNNING" and pods[on_demand["id"]]["gpuCount"] == 1
    resume = post(client, "mutation R($p: String!) { podResume(input: {podId: $p, gpuCount: 1}) { id } }", {"p": spot["id"]}).json()
    assert resume["errors"][0]["message"] == sim.MSG_INTERRUPTED


def test_accounts_are_separate_and_bad_keys_are_401(served) -> None:
    sandbox, client = served
    post(client, DEPLOY % ("NVIDIA H100 80GB HBM3", 1))
    other = client.post("/graphql", json={"query": LIST_PODS}, headers={"Authorization": "Bearer rp_another_account"})
    assert other.json()["data"]["myself"]["pods"] == []
    by_query = client.post("/graphql", json={"query": LIST_PODS}, params={"api_key": KEY}, headers={"Authorization": ""})
    assert len(by_query.json()["data"]["myself"]["pods"]) == 1
    for bad in ("", "Bearer short", "Bearer revoked_0123456", "Basic abcdefghij"):
        answer = client.post("/graphql", json={"query": LIST_PODS}, headers={"Authorization": bad})
        assert answer.status_code == 401 and answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_aimed_faults_find_the_pod_in_the_document_or_its_variables(served) -> None:
    sandbox, client = served
    pod_id = post(client, DEPLOY % ("NVIDIA H100 80GB HBM3", 1)).json()["data"]["podFindAndDeployOnDemand"]["id"]
    read = "query P($p: String!) { pod(input: {podId: $p}) { id } }"
    sandbox.arm("phantom_404", "some-other-pod")
    assert post(client, read, {"p": pod_id}).json()["data"]["pod"] == {"id": pod_id}  # aimed elsewhere
    sandbox.arm("phantom_404", pod_id)
    assert post(client, read, {"p": pod_id}).json()["data"]["pod"] is None  # "not found", once
    assert post(client, read, {"p": pod_id}).json()["data"]["pod"] == {"id": pod_id}
    assert [p["id"] for p in post(client, LIST_PODS).json()["data"]["myself"]["pods"]] == [pod_id]  # the list still shows it
    sandbox.arm("ignored_delete", pod_id)
    assert post(client, 'mutation { podTerminate(input: {podId: "' + pod_id + '"}) }').json() == {"data": {"podTerminate": None}}
    assert sandbox.visible_pod(KEY, pod_id) is not None and sandbox.state()["deletes"] == []  # acknowledged, nothing deleted
    post(client, 'mutation { podTerminate(input: {podId: "' + pod_id + '"}) }')
    assert sandbox.visible_pod(KEY, pod_id) is None
    assert sandbox.faults.injected["phantom_404"] == 1 and sandbox.faults.injected["ignored_delete"] == 1
