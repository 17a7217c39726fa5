"""Run inside the official `runpod` SDK's own virtual environment (never imports gpusupply): drive the
SDK's public functions against RUNPOD_API_BASE_URL and print one JSON object of what each returned
or raised, for tests/sandbox/test_runpod_sdk.py to check against the sandbox's truth."""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import runpod


def attempt(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return {"ok": fn(*args, **kwargs)}
    except Exception as exc:  # the test reads the SDK's own error types
        return {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc(limit=2)}


def main() -> None:
    key, bad_key, gpu_id, public_key = sys.argv[1:5]
    out: dict[str, Any] = {"sdk_version": runpod.__version__}
    runpod.api_key = key
    out["get_gpus"] = attempt(runpod.get_gpus)
    out["get_gpu"] = attempt(runpod.get_gpu, gpu_id, 2)
    out["get_gpu_unknown"] = attempt(runpod.get_gpu, "NVIDIA Imaginary 9000")
    out["create_pod"] = attempt(
        runpod.create_pod, "sdk-pod", "runpod/base:0.6.2-cuda12.2.0", gpu_id, cloud_type="SECURE", ports="22/tcp,8888/http",
        env={"PUBLIC_KEY": public_key}, container_disk_in_gb=20,
    )
    out["create_pod_too_big"] = attempt(runpod.create_pod, "too-big", "runpod/base:0.6.2-cuda12.2.0", gpu_id, gpu_count=64)
    pod_id = (out["create_pod"].get("ok") or {}).get("id")
    if pod_id:
        out["get_pods"] = attempt(runpod.get_pods)
        out["get_pod"] = attempt(runpod.get_pod, pod_id)
        out["stop_pod"] = attempt(runpod.stop_pod, pod_id)
        out["get_pod_stopped"] = attempt(runpod.get_pod, pod_id)
        out["resume_pod"] = attempt(runpod.resume_pod, pod_id, 1)
        out["terminate_pod"] = attempt(runpod.terminate_pod, pod_id)
        out["get_pod_terminated"] = attempt(runpod.get_pod, pod_id)
        out["stop_pod_terminated"] = attempt(runpod.stop_pod, pod_id)
    runpod.api_key = bad_key
    out["bad_key"] = attempt(runpod.get_gpus)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
