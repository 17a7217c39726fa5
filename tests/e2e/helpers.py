"""End-to-end rig: sandbox vendors and gpusupply itself as separate OS processes.

- `SandboxProcess`: `gpusupply sandbox <vendor> --port N`, a standalone simulated vendor that
  outlives any service process we kill; its truth is read over HTTP (`GET /_sandbox/state`).
- `ServiceProcess`: `gpusupply serve` / `serve --no-engine` / `worker`, pointed at the sandboxes
  as if they were the live vendors (`GPUSUPPLY_<VENDOR>_URL` + `GPUSUPPLY_<VENDOR>_API_KEY`), with
  short engine intervals, optionally told to die at a named step (`GPUSUPPLY_TEST_CRASH_AT`).
- `Api`: a small client of the service's HTTP API, as a user would call it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import psutil

from gpusupply.sandbox.common import account_fingerprint

from ..conftest import free_port
from ..engine.helpers import SSH_KEY, available_vendors

BIN = Path(sys.executable).parent / "gpusupply"
VENDOR_KEY = "e2e-account-key"
# A deadline, not a expectation: a process usually answers within seconds, but several starting
# together on a loaded 2-core machine (load 22) took over 30 s each.
START_WITHIN = 120.0




class PortTaken(Exception):
    """The port `free_port` chose was taken by another process before ours could bind it."""


START_ATTEMPTS = 4  # each on a fresh port, when the chosen one was taken meanwhile


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds the listening socket on `port`: an answer on the port may
    come from another test's server that took the port between `free_port` and our bind."""
    with contextlib.suppress(psutil.Error):
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for c in psutil.Process(pid).net_connections(kind="tcp")
        )
    return False


def exited_on_taken_port(proc: subprocess.Popen[bytes], output: str) -> bool:
    return proc.poll() is not None and "address already in use" in output


def wait_for(predicate: Any, *, within: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class SandboxProcess:
    vendor: str
    log: Path
    seed: int = 11
    offers: int = 80
    ready_after: float = 0.3
    stock_each: int | None = None  # --stock: units of every Nebula product / fal type
    rate_scale: float = 1.0  # --rate-scale; service_env paces the adapters alike
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SandboxProcess:
        for _ in range(START_ATTEMPTS):
            try:
                return self._start_once()
            except PortTaken:
                self.port = free_port()
        raise AssertionError(f"the {self.vendor} sandbox found no free port in {START_ATTEMPTS} tries")

    def _start_once(self) -> SandboxProcess:
        cmd = [
            str(BIN), "sandbox", self.vendor, "--port", str(self.port), "--seed", str(self.seed),
            "--offers", str(self.offers), "--ready-after", str(self.ready_after), "--rate-scale", str(self.rate_scale),
        ]
        if self.stock_each is not None:
            cmd += ["--stock", str(self.stock_each)]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        wait_for(self._up, within=START_WITHIN, what=f"the {self.vendor} sandbox")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            output = self.log.read_text(errors="replace")
            if exited_on_taken_port(self.proc, output):
                raise PortTaken(self.port)
            raise AssertionError(f"{self.vendor} sandbox exited: {output[-2000:]}")
        if not listens_on(self.proc.pid, self.port):
            return False
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.url + "/_sandbox/state", timeout=2).status_code == 200
        return False

    def state(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/_sandbox/state", timeout=30)
        response.raise_for_status()
        return response.json()

    def configure(self, **values: Any) -> None:
        httpx.put(self.url + "/_sandbox/config", json=values, timeout=10).raise_for_status()

    def live_instances(self) -> list[dict[str, Any]]:
        account = account_fingerprint(VENDOR_KEY)
        return [i for i in self.state()["instances"] if i["account"] == account and i["phase"] not in ("deleted", "preempted")]

    def creates_by_marker(self) -> Counter[str]:
        account = account_fingerprint(VENDOR_KEY)
        return Counter(c["marker"] for c in self.state()["creates"] if c["account"] == account)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)


class Startable(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> None: ...


StartableT = TypeVar("StartableT", bound=Startable)


def start_together(processes: Iterable[StartableT]) -> list[StartableT]:
    """Start processes side by side: each start is mostly Python importing its modules and waiting
    for its port, so five sandboxes start in the time of two or three instead of five. If one
    fails, the others are stopped and its error raised."""
    processes = list(processes)
    with ThreadPoolExecutor(max(len(processes), 1)) as pool:
        errors = [future.exception() for future in [pool.submit(p.start) for p in processes]]
    failure = next((error for error in errors if error is not None), None)
    if failure is not None:
        for process in processes:
            process.stop()
        raise failure
    return processes


@contextlib.contextmanager
def sandbox_processes(vendors: Iterable[str], logs: Path, **options: Any) -> Iterator[dict[str, SandboxProcess]]:
    """vendor -> a started `SandboxProcess` (started together), all stopped on exit."""
    sandboxes = {vendor: SandboxProcess(vendor, logs / f"{vendor}.log", **options) for vendor in vendors}
    start_together(sandboxes.values())
    try:
        yield sandboxes
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()


def service_env(database_url: str, data_dir: Path, sandboxes: dict[str, SandboxProcess], **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUSUPPLY_")}
    env.update(
        GPUSUPPLY_DATABASE_URL=database_url,
        GPUSUPPLY_DATA_DIR=str(data_dir),
        GPUSUPPLY_ENABLED_VENDORS=",".join(sandboxes),
        GPUSUPPLY_LEASE_SECONDS="2",
        GPUSUPPLY_ENGINE_POLL_SECONDS="0.1",
        GPUSUPPLY_PROVISIONING_POLL_SECONDS="0.2",
        GPUSUPPLY_CREATE_VISIBILITY_SECONDS="1",
        GPUSUPPLY_REFRESH_INTERVAL_SECONDS="5",
        GPUSUPPLY_RECONCILE_INTERVAL_SECONDS="2",
        GPUSUPPLY_ORPHAN_GRACE_SECONDS="3600",
        GPUSUPPLY_VENDOR_TIMEOUT="5",
        GPUSUPPLY_LOG_LEVEL="warning",
    )
    scales = {sandbox.rate_scale for sandbox in sandboxes.values()}
    if len(scales) > 1:
        raise ValueError(f"sandboxes run at different rate scales {scales}: one GPUSUPPLY_VENDOR_RATE_SCALE cannot pace them all")
    env["GPUSUPPLY_VENDOR_RATE_SCALE"] = str(scales.pop() if scales else 1.0)
    for vendor, sandbox in sandboxes.items():
        env[f"GPUSUPPLY_{vendor.upper()}_URL"] = sandbox.url
        env[f"GPUSUPPLY_{vendor.upper()}_API_KEY"] = VENDOR_KEY
    env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass
class ServiceProcess:
    """One `gpusupply` server process (serve or worker)."""

    args: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log_start: int = 0  # where this start's output begins in the (appended) log

    @classmethod
    def serve(cls, env: dict[str, str], log: Path, *, engine: bool = True) -> ServiceProcess:
        port = free_port()
        args = ["serve", "--port", str(port)] + ([] if engine else ["--no-engine"])
        return cls(args, env, log, port)

    @classmethod
    def worker(cls, env: dict[str, str], log: Path) -> ServiceProcess:
        return cls(["worker"], env, log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, crash_at: str | None = None) -> ServiceProcess:
        """Start it; wait until it serves, unless it is meant to crash (it may do so while starting)."""
        for _ in range(START_ATTEMPTS):
            try:
                return self._start_once(crash_at)
            except PortTaken:
                self.port = free_port()
                self.args[self.args.index("--port") + 1] = str(self.port)
        raise AssertionError(f"`gpusupply {' '.join(self.args)}` found no free port in {START_ATTEMPTS} tries")

    def _start_once(self, crash_at: str | None) -> ServiceProcess:
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        env = dict(self.env)
        if crash_at:
            env["GPUSUPPLY_TEST_CRASH_AT"] = crash_at
        self.proc = subprocess.Popen([str(BIN), *self.args], env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        if crash_at:
            return self
        if self.port is not None:
            wait_for(self._up, within=START_WITHIN, what=f"`gpusupply {' '.join(self.args)}` to answer")
        else:
            wait_for(lambda: self._alive() and "worker" in self.log.read_text(errors="replace"), within=START_WITHIN, what="the worker to start")
        return self

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            with self.log.open("rb") as log:  # this start's output only: the log is shared by restarts
                log.seek(self._log_start)
                if self.port is not None and exited_on_taken_port(self.proc, log.read().decode(errors="replace")):
                    raise PortTaken(self.port)
            raise AssertionError(f"`gpusupply {' '.join(self.args)}` exited {self.proc.returncode}: {self.log.read_text(errors='replace')[-3000:]}")
        return True

    def _up(self) -> bool:
        self._alive()
        assert self.proc is not None and self.port is not None
        if not listens_on(self.proc.pid, self.port):
            return False
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        return False

    def wait_exit(self, within: float) -> int:
        assert self.proc is not None
        return self.proc.wait(within)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def run_until_crash(backend: str, env: dict[str, str], log: Path, crash_at: str) -> None:
    """Start the engine (a worker on PostgreSQL, `serve` on SQLite) armed to SIGKILL itself at
    `crash_at`, and wait for it to die there."""
    crashing = ServiceProcess.worker(env, log) if backend == "postgres" else ServiceProcess.serve(env, log)
    crashing.start(crash_at=crash_at)
    try:
        code = crashing.wait_exit(60)
    except subprocess.TimeoutExpired:
        crashing.kill()
        raise AssertionError(f"the engine never reached {crash_at}: {log.read_text(errors='replace')[-2000:]}") from None
    assert code == 137, log.read_text(errors="replace")[-2000:]
    assert f"crashing at {crash_at}" in log.read_text(errors="replace")


def create_api_key(env: dict[str, str]) -> str:
    out = subprocess.run([str(BIN), "keys", "create", "e2e"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


class Api:
    def __init__(self, url: str, token: str):
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def close(self) -> None:
        self.client.close()

    def families(self) -> list[str]:
        return list(self.client.get("/available_gpus").raise_for_status().json())

    def find_offers(self, vendor: str, *, at_least: int = 1) -> list[dict[str, Any]]:
        """Offers of one vendor, cheapest first, for the first GPU family that has enough."""
        for family in ["H100", *self.families()]:
            body = {"vendor": vendor, "compute": {"gpu_type": family, "gpu_count": 1, "contract_type": "ondemand"}}
            response = self.client.post("/get_offers", json=body, params={"limit": 200})
            response.raise_for_status()
            offers = response.json()["offers"]
            if len(offers) >= at_least:
                return offers
        raise AssertionError(f"no {vendor} offers")

    def procure(self, offer_id: str) -> str:
        response = self.client.post("/procure_offer", json={"offer_id": offer_id, "ssh_public_key": SSH_KEY})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] != "failed", body
        return body["resource_ids"][0]

    def resource(self, resource_id: str) -> dict[str, Any]:
        return self.client.get(f"/resources/{resource_id}").raise_for_status().json()

    def delete(self, resource_id: str) -> None:
        response = self.client.delete(f"/resources/{resource_id}")
        assert response.status_code == 200, response.text

    def wait_status(self, resource_id: str, *statuses: str, within: float = 60) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal last
            last = self.resource(resource_id)
            return last["status"] in statuses

        try:
            wait_for(reached, within=within, what=f"resource {resource_id} to be {statuses}", every=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last: {last.get('status')} ({last.get('status_message')})") from None
        return last


def e2e_vendors() -> list[str]:
    return available_vendors()


def distinct_offers(api: Api, vendors: list[str], count: int) -> list[dict[str, Any]]:
    """`count` offers, one per vendor offer (an ask, a product, an instance type), spread over vendors."""
    per_vendor: dict[str, list[dict[str, Any]]] = {v: [] for v in vendors}
    seen: set[tuple[str, str]] = set()
    for family in api.families():
        for gpu_count in (1, 2, 4, 8):
            body = {"compute": {"gpu_type": family, "gpu_count": gpu_count, "contract_type": "ondemand"}}
            response = api.client.post("/get_offers", json=body, params={"limit": 500})
            response.raise_for_status()
            for offer in response.json()["offers"]:
                key = (offer["vendor"], offer["offer_id"])
                if offer["vendor"] in per_vendor and key not in seen:
                    seen.add(key)
                    per_vendor[offer["vendor"]].append(offer)
    chosen: list[dict[str, Any]] = []
    while len(chosen) < count and any(per_vendor.values()):  # round robin over vendors
        for offers in per_vendor.values():
            if offers and len(chosen) < count:
                chosen.append(offers.pop(0))
    assert len(chosen) == count, f"only {len(chosen)} offers"
    return chosen
