"""The official `runpod` Python SDK, unchanged, against the RunPod sandbox (RUNPOD_API_BASE_URL):
get_gpus, get_gpu, create_pod, get_pods, get_pod, stop_pod, resume_pod, terminate_pod, and its
errors on no capacity and on a bad key, each checked against the sandbox's own truth.

The SDK pins heavy dependencies of its own (FastAPI, boto3, aiohttp, ...), so it never enters the
project's environment: the test setup makes it a virtual environment of its own in the pytest cache
(`.pytest_cache/d/runpod-sdk-<version>`, built once, about 4 minutes, then reused). Without network
the venv cannot be made: the test is skipped locally and fails under CI (`CI` set)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

from gpusupply.sandbox.common import SandboxConfig, account_fingerprint
from gpusupply.sandbox.runner import ServerThread
from gpusupply.sandbox.runpod import MSG_NO_CAPACITY, RunPodSandbox

SDK_VERSION = "1.12.0"
SCRIPT = Path(__file__).with_name("runpod_sdk_script.py")
KEY = "sdk_test_key_0001"
BAD_KEY = "revoked_sdk_key_0002"
GPU_ID = "NVIDIA H100 80GB HBM3"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqyW18ZGi2DJz/l+lLuY53kFjwSih6p43MKiuWl49io sdk@test"
INSTALL_TIMEOUT = 900


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the runpod SDK environment is required under CI: {reason}")
    pytest.skip(reason)


def sdk_python(cache_dir: Path) -> Path:
    """The SDK venv's python, made on first use (one builder at a time across xdist workers)."""
    env_dir = cache_dir / "venv"
    python = env_dir / "bin" / "python"
    ready = cache_dir / "ready"
    with open(cache_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists() and python.exists():
            return python
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        try:
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"runpod=={SDK_VERSION}"],
                check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = getattr(exc, "stderr", "") or ""
            _unavailable(f"could not install runpod=={SDK_VERSION} into its own venv: {output.strip()[-500:]}")
        ready.write_text(SDK_VERSION)
        return python


@pytest.fixture(scope="session")
def runpod_sdk(request: pytest.FixtureRequest) -> Path:
    return sdk_python(request.config.cache.mkdir(f"runpod-sdk-{SDK_VERSION}"))


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_the_official_sdk_works_unchanged_against_the_sandbox(runpod_sdk: Path) -> None:
    sandbox = RunPodSandbox(SandboxConfig(seed=5, ready_after=0.0, rate_limits=True))
    with ServerThread(sandbox.create_app()) as server:
        env = {**os.environ, "RUNPOD_API_BASE_URL": server.url}
        done = subprocess.run(
            [str(runpod_sdk), str(SCRIPT), KEY, BAD_KEY, GPU_ID, PUBLIC_KEY], capture_output=True, text=True, env=env, timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["sdk_version"] == SDK_VERSION

    gpus = out["get_gpus"]["ok"]
    assert {g["id"] for g in gpus} == set(sandbox.gpu_types)
    assert all(set(g) == {"id", "displayName", "memoryInGb"} for g in gpus)

    gpu = out["get_gpu"]["ok"]
    truth = sandbox.gpu_types[GPU_ID]
    assert gpu["id"] == GPU_ID and gpu["displayName"] == truth.gpu.display_name and gpu["securePrice"] == truth.secure_price
    assert gpu["lowestPrice"]["minimumBidPrice"] == truth.secure_spot and gpu["maxGpuCount"] >= 2
    assert out["get_gpu_unknown"]["error"] == "ValueError"  # the SDK's own check: no such GPU type

    created = out["create_pod"]["ok"]
    pod = sandbox.instances[created["id"]]
    assert pod.marker == "sdk-pod" and created["imageName"] == "runpod/base:0.6.2-cuda12.2.0"
    assert created["env"] == [f"PUBLIC_KEY={PUBLIC_KEY}"] and created["machine"]["podHostId"].startswith(created["id"])
    assert pod.account == KEY and [c["instance_id"] for c in sandbox.state()["creates"]] == [created["id"]]

    assert out["create_pod_too_big"] == {**out["create_pod_too_big"], "error": "QueryError", "message": MSG_NO_CAPACITY}

    (listed,) = out["get_pods"]["ok"]
    assert listed["id"] == created["id"] and listed["name"] == "sdk-pod" and listed["gpuCount"] == 1
    assert listed["podType"] == "RESERVED" and listed["ports"] == "22/tcp,8888/http"
    assert out["get_pod"]["ok"]["id"] == created["id"]
    assert out["get_pod"]["ok"]["runtime"]["ports"][0]["privatePort"] == 22  # ready_after 0: running at once
    assert out["stop_pod"]["ok"] == {"id": created["id"], "desiredStatus": "EXITED"}
    assert out["get_pod_stopped"]["ok"]["desiredStatus"] == "EXITED" and out["get_pod_stopped"]["ok"]["runtime"] is None
    assert out["resume_pod"]["ok"]["desiredStatus"] == "RUNNING"
    assert out["terminate_pod"] == {"ok": None}
    assert out["get_pod_terminated"] == {"ok": None}
    assert out["stop_pod_terminated"]["error"] == "QueryError"
    assert sandbox.state()["deletes"][0]["instance_id"] == created["id"]
    assert not sandbox.visible_pods(KEY)

    assert out["bad_key"]["error"] == "AuthenticationError"
    assert "api key" in out["bad_key"]["message"].lower()
    assert account_fingerprint(BAD_KEY) not in {c["account"] for c in sandbox.state()["creates"]}


def test_a_missing_sdk_environment_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI"):
        _unavailable("no network")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _unavailable("no network")

