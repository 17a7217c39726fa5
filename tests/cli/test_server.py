"""Server-side commands: keys, db upgrade, and real processes for serve, worker and sandbox."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gpusupply.cli.main import app
from gpusupply.settings import VENDORS
from tests.conftest import SSH_KEY, free_port
from tests.e2e.helpers import listens_on

GPUSUPPLY = str(Path(sys.executable).parent / "gpusupply")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("GPUSUPPLY_")}
    values.update(
        GPUSUPPLY_DATA_DIR=str(tmp_path / "data"),
        GPUSUPPLY_SANDBOX_OFFERS="100",
        GPUSUPPLY_SANDBOX_READY_AFTER="0.2",
        GPUSUPPLY_LOG_LEVEL="warning",
    )
    return values


@pytest.fixture
def cli(env: dict[str, str]) -> Iterator[CliRunner]:
    yield CliRunner(env=env)


def test_keys_create_list_revoke(cli: CliRunner) -> None:
    created = cli.invoke(app, ["keys", "create", "ci-bot", "--tenant", "platform"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("gsk_") and "platform" in created.output
    admin = cli.invoke(app, ["keys", "create", "root", "--admin"])
    assert admin.exit_code == 0 and "[admin]" in admin.output
    listed = cli.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0
    assert token[:12] in listed.output and token not in listed.output and "platform" in listed.output
    revoked = cli.invoke(app, ["keys", "revoke", token[:12]])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    again = cli.invoke(app, ["keys", "revoke", token[:12]])
    assert again.exit_code == 1 and "already revoked" in again.output
    unknown = cli.invoke(app, ["keys", "revoke", "gsk_nope"])
    assert unknown.exit_code == 1 and "no API key" in unknown.output
    bad = cli.invoke(app, ["keys", "create", "x", "--tenant", "no spaces please"])
    assert bad.exit_code == 1 and "tenant name" in bad.output


def test_server_commands_find_one_database_from_any_directory(env: dict[str, str], tmp_path: Path) -> None:
    """Without GPUSUPPLY_DATA_DIR the database is the user's ($XDG_DATA_HOME/gpusupply), wherever
    the command runs, and each command says which database it opened."""
    env = {k: v for k, v in env.items() if k != "GPUSUPPLY_DATA_DIR"}
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME="")
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir(), second.mkdir()
    created = subprocess.run([GPUSUPPLY, "keys", "create", "anywhere"], cwd=first, env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    database = tmp_path / "home" / ".local" / "share" / "gpusupply" / "gpusupply.db"
    assert created.stderr.startswith(f"database: sqlite+aiosqlite:///{database} (new: no database there yet")
    token = created.stdout.strip().splitlines()[-1]
    listed = subprocess.run([GPUSUPPLY, "keys", "list"], cwd=second, env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and token[:12] in listed.stdout
    assert listed.stderr.strip() == f"database: sqlite+aiosqlite:///{database}"
    assert not (first / ".gpusupply").exists() and not (second / ".gpusupply").exists()


def test_db_upgrade_and_bad_configuration(cli: CliRunner, env: dict[str, str]) -> None:
    result = cli.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0 and "newest revision" in result.output
    assert (Path(env["GPUSUPPLY_DATA_DIR"]) / "gpusupply.db").exists()
    broken = cli.invoke(app, ["db", "upgrade"], env={"GPUSUPPLY_PORT": "not-a-port"})
    assert broken.exit_code == 2 and "invalid configuration" in broken.output


def test_version_and_help(cli: CliRunner) -> None:
    assert cli.invoke(app, ["--version"]).output.strip()
    help_text = cli.invoke(app, ["--help"]).output
    for command in ("serve", "worker", "sandbox", "db", "keys"):
        assert command in help_text


def wait_http(url: str, proc: subprocess.Popen[str], within: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        if not listens_on(proc.pid, httpx.URL(url).port or 80):
            time.sleep(0.1)  # not bound yet (an answer now could come from another server on the port)
            continue
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    return out


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([GPUSUPPLY, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_serve_prints_the_banner_and_a_first_key(env: dict[str, str]) -> None:
    port = free_port()
    proc = start(["serve", "--port", str(port), "--no-engine"], env)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/healthz", proc).status_code == 200
        lines: list[str] = []
        for line in proc.stdout or []:
            lines.append(line.strip())
            if line.startswith("gsk_"):
                break
        token = lines[-1]
        assert f"listening on http://127.0.0.1:{port}" in lines[0]
        assert any(line.startswith("database: sqlite+aiosqlite:///") for line in lines)
        vendor_lines = [line for line in lines if line.startswith("vendor ")]
        assert [line.split(" (")[0] for line in vendor_lines] == [f"vendor {v}: sandbox" for v in VENDORS]
        # API-only: an in-process sandbox is not shared with the workers, and the banner says so.
        assert all("GPUSUPPLY_" in line and "_URL" in line for line in vendor_lines)
        vendors = httpx.get(f"http://127.0.0.1:{port}/available_vendors", headers={"Authorization": f"Bearer {token}"})
        assert vendors.status_code == 200 and {v["mode"] for v in vendors.json()} == {"sandbox"}
        assert httpx.get(f"http://127.0.0.1:{port}/available_vendors").status_code == 401
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    # A second start finds the key and creates none.
    port = free_port()
    proc = start(["serve", "--port", str(port), "--no-engine"], env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    finally:
        out = stop(proc)
    assert "gsk_" not in out and "first API key" not in out


def test_serve_hides_the_database_password(env: dict[str, str]) -> None:
    env = {**env, "GPUSUPPLY_DATABASE_URL": "postgresql+asyncpg://user:hunter2@127.0.0.1:9/db"}
    proc = start(["serve", "--port", str(free_port())], env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0  # nothing listens there
    assert "hunter2" not in out


def test_worker_runs_until_signalled(env: dict[str, str]) -> None:
    proc = start(["worker"], env)
    try:
        lines = []
        for line in proc.stdout or []:
            lines.append(line)
            if "worker" in line and "running" in line:
                break
        assert any("running" in line for line in lines), lines
    finally:
        out = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, out


def test_sandbox_serves_one_vendor(env: dict[str, str]) -> None:
    port = free_port()
    proc = start(["sandbox", "fal", "--port", str(port), "--seed", "3", "--faults", "429=0.5", "--rate-scale", "4"], env)
    try:
        state = wait_http(f"http://127.0.0.1:{port}/_sandbox/state", proc).json()
        assert state["vendor"] == "fal" and state["seed"] == 3 and state["faults"] == {"429": 0.5}
        assert state["prices_move"] is False  # fixed seeded prices unless --prices-move
        assert httpx.put(f"http://127.0.0.1:{port}/_sandbox/config", json={}).json()["rate_scale"] == 4
    finally:
        stop(proc)
    proc = start(["sandbox", "nebula", "--port", str(port), "--prices-move"], env)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/_sandbox/state", proc).json()["prices_move"] is True
    finally:
        stop(proc)
    bad = subprocess.run([GPUSUPPLY, "sandbox", "aws", "--port", "1"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown vendor" in bad.stderr
    bad = subprocess.run([GPUSUPPLY, "sandbox", "fal", "--port", "1", "--faults", "boom=1"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown fault" in bad.stderr
    bad = subprocess.run([GPUSUPPLY, "sandbox", "fal", "--port", "1", "--rate-scale", "0"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--rate-scale" in bad.stderr


def banner_token(proc: subprocess.Popen[str]) -> list[str]:
    """The banner's lines up to the first API key (printed on a first start)."""
    lines: list[str] = []
    for line in proc.stdout or []:
        lines.append(line.strip())
        if line.startswith("gsk_"):
            break
    return lines


def test_sandboxes_survive_a_restart_and_belong_to_one_process(env: dict[str, str]) -> None:
    # Fixed sandbox prices: with the market walking on the wall clock, a spot offer's minimum bid
    # could rise between the search and the create (a refused create) or the instance be outbid
    # across the restart; neither is what this test is about.
    env = {**env, "GPUSUPPLY_REFRESH_INTERVAL_SECONDS": "0.5", "GPUSUPPLY_ENGINE_POLL_SECONDS": "0.1",
           "GPUSUPPLY_PROVISIONING_POLL_SECONDS": "0.2", "GPUSUPPLY_ENABLED_VENDORS": "nebula,vast",
           "GPUSUPPLY_SANDBOX_PRICES_MOVE": "false"}
    port = free_port()
    proc = start(["serve", "--port", str(port)], env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        lines = banner_token(proc)
        token = lines[-1]
        assert "vendor nebula: sandbox (simulated: no real instances" in "\n".join(lines)
        state_dir = Path(env["GPUSUPPLY_DATA_DIR"]) / "sandboxes"
        assert f"sandbox state: {state_dir}" in "\n".join(lines)
        # A second process on the same data directory is refused, naming the first.
        second = subprocess.run([GPUSUPPLY, "serve", "--port", str(free_port())], env=env, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 1
        assert f"the sandbox vendors of {state_dir.parent} are run by another process (pid {proc.pid})" in second.stderr
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        rids = []
        for vendor in ("nebula", "vast"):
            offers = api.post("/get_offers", json={"compute": {"gpu_type": "RTX4090"}, "vendor": vendor},
                              params={"limit": 1}).json()["offers"]
            offers = offers or api.post("/get_offers", json={"compute": {"gpu_type": "H100"}, "vendor": vendor},
                                        params={"limit": 1}).json()["offers"]
            answer = api.post("/procure_offer", json={"offer_id": offers[0]["offer_id"], "ssh_public_key": SSH_KEY})
            rids.append(answer.json()["resource_ids"][0])
        before = {rid: until(api, rid, "running") for rid in rids}
        for resource in before.values():  # simulated hosts cannot be mistaken for real ones
            host = resource["access"]["ssh_command"].split("@")[1].split()[0]
            assert host.endswith(".sandbox.invalid") or any(
                ipaddress.ip_address(host) in ipaddress.ip_network(net) for net in DOCUMENTATION_NETWORKS), host
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    port = free_port()
    proc = start(["serve", "--port", str(port)], env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        for rid, earlier in before.items():
            again = api.get(f"/resources/{rid}", params={"force_refresh": "true"}).json()
            assert again["status"] == "running" and again["access"] == earlier["access"], again
        time.sleep(1.5)  # three refresh intervals of the engine: still running  # noqa: ASYNC251
        for rid in rids:
            events = api.get(f"/resources/{rid}/events").json()["events"]
            assert [e["to_status"] for e in events if e["kind"] == "status_change"][-1] == "running", events
            assert api.delete(f"/resources/{rid}").status_code == 200
            until(api, rid, "deleted")
    finally:
        stop(proc)


DOCUMENTATION_NETWORKS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")  # RFC 5737


def until(api: httpx.Client, rid: str, status: str, within: float = 60.0) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        resource = api.get(f"/resources/{rid}").json()
        if resource["status"] == status:
            return resource
        time.sleep(0.2)
    raise AssertionError(f"{rid} is {resource['status']} ({resource.get('status_message')}), not {status}")
