"""The SDK and the client CLI installed alone, as `pip install gpusupply` installs them: into a
fresh virtual environment, from a copy of this repository, with no extras. There the server's
packages are not importable, `import gpusupply.client` loads no server code, and the SDK and the
`gpusupply` command search offers on a server started from the main environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ServiceProcess, create_api_key, service_env

pytestmark = pytest.mark.timeout(900)  # a cold pip cache downloads the client's dependencies

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = ("fastapi", "sqlalchemy", "asyncpg", "numpy", "uvicorn", "alembic", "pydantic_settings", "yaml")
SERVER_CODE = ("api", "services", "engine", "db", "sandbox", "vendors", "web", "settings", "logging")
VENDORS = "nebula,vast"  # in-process sandboxes of the server: two are enough to search across vendors

# Run inside the client's environment: what importing the SDK and the client commands loads.
IMPORT_CHECK = f"""
import importlib, importlib.util, json, pkgutil, sys
missing = [name for name in {SERVER_PACKAGES!r} if importlib.util.find_spec(name) is None]
import gpusupply.client
import gpusupply.cli.main
import gpusupply.contract, gpusupply.core
for package in (gpusupply.client, gpusupply.contract, gpusupply.core):  # every module of the three
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
server_code = sorted(m for m in sys.modules if m.startswith("gpusupply.") and m.split(".")[1] in {SERVER_CODE!r})
print(json.dumps({{"missing": missing, "server_code": server_code, "file": gpusupply.client.__file__}}))
"""

# The SDK against the server: every offer of the first family that has some, and an unknown vendor.
SDK_SEARCH = """
import json, sys
from gpusupply.client import BadRequestError, GpuSupply
with GpuSupply(sys.argv[1], sys.argv[2]) as gs:
    family = next(f for f in gs.available_gpus() if gs.get_offers(f, limit=1).offers)
    offers = list(gs.iter_offers(family, page_size=50))
    try:
        gs.get_offers(family, vendor="no-such-vendor")
        refusal = None
    except BadRequestError as error:
        refusal = {"status": error.status, "message": str(error)}
    vendors = [v.id for v in gs.available_vendors()]
print(json.dumps({"family": family, "offers": len(offers), "vendors_seen": sorted({o.vendor for o in offers}),
                  "cheapest_first": [o.gpu_price_per_hour for o in offers] == sorted(o.gpu_price_per_hour for o in offers),
                  "refusal": refusal, "vendors": vendors,
                  "server_code": sorted(m for m in sys.modules if m.startswith(("gpusupply.api", "gpusupply.services")))}))
"""


def client_env() -> dict[str, str]:
    """The environment for the client's interpreter: nothing of this checkout on its path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith("GPUSUPPLY_")}


def run(args: list[str], cwd: Path, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=client_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def client_alone(tmp_path: Path) -> Path:
    """A fresh venv with the package installed from a copy of the repository, no extras; its bin/."""
    copy = tmp_path / "gpusupply-src"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    # A copy: pip builds in the source tree (build/, *.egg-info), which must not touch the checkout.
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp_path / "client-venv"
    # Without its own pip (ensurepip is slow): this environment's pip installs into it (--python).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", str(copy)],
        cwd=tmp_path, env=client_env(), capture_output=True, text=True, timeout=800,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv / "bin"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`gpusupply serve` from the main environment (in-process sandbox vendors): (url, API key)."""
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'server.db'}", tmp_path / "data", {},
                      GPUSUPPLY_ENABLED_VENDORS=VENDORS, GPUSUPPLY_SANDBOX_OFFERS=300)
    token = create_api_key(env)
    process = ServiceProcess.serve(env, tmp_path / "serve.log").start()
    try:
        yield process.url, token
    finally:
        process.stop()


def test_the_client_installs_and_works_without_the_server(client_alone: Path, server: tuple[str, str], tmp_path: Path) -> None:
    python, gpusupply = str(client_alone / "python"), str(client_alone / "gpusupply")

    # Installed alone: no server package, and the SDK and the CLI load no server code.
    imported = run([python, "-c", IMPORT_CHECK], tmp_path)
    assert imported.returncode == 0, imported.stderr
    facts = json.loads(imported.stdout)
    assert facts["missing"] == list(SERVER_PACKAGES), facts
    assert facts["server_code"] == [], facts
    assert Path(facts["file"]).is_relative_to(client_alone.parent), facts  # the installed copy, not this checkout

    # The SDK against a running server.
    url, token = server
    searched = run([python, "-c", SDK_SEARCH, url, token], tmp_path)
    assert searched.returncode == 0, searched.stderr
    found = json.loads(searched.stdout)
    assert found["offers"] > 0 and found["cheapest_first"] and set(found["vendors_seen"]) <= set(VENDORS.split(","))
    assert sorted(found["vendors"]) == sorted(VENDORS.split(","))  # the vendor list comes from the server
    # An unknown vendor goes to the server, whose 422 names the vendors it has.
    assert found["refusal"]["status"] == 422 and all(v in found["refusal"]["message"] for v in VENDORS.split(","))
    assert found["server_code"] == []

    # The client CLI: offers as JSON and as a table.
    listed = run([gpusupply, "offers", found["family"], "--url", url, "--api-key", token, "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    answer = json.loads(listed.stdout)
    assert answer["total_count"] == found["offers"] and answer["offers"]
    table = run([gpusupply, "offers", found["family"], "--limit", "3", "--url", url, "--api-key", token], tmp_path)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:2] == ["GPU", "VENDOR"]
    assert table.stdout.splitlines()[-1].startswith(f"{min(3, found['offers'])} of {found['offers']} offers")

    # The server commands say in one line what to install; --help works without them.
    for command in (["serve"], ["db", "upgrade"], ["keys", "create", "ops"]):
        refused = run([gpusupply, *command], tmp_path)
        assert refused.returncode == 2 and refused.stdout == "", (command, refused.stdout, refused.stderr)
        assert refused.stderr.splitlines() == [
            f"error: `gpusupply {command[0]}` needs the gpusupply server, which is not installed here: "
            "pip install 'gpusupply[server]'"
        ]
    helped = run([gpusupply, "--help"], tmp_path)
    assert helped.returncode == 0 and " offers " in helped.stdout and " serve " in helped.stdout, helped.stderr
