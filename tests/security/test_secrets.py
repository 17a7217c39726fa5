"""Secrets never appear in clear: a whole lifecycle on a real `gpusupply serve` (JSON logs, debug
level) with distinctive vendor keys, API tokens and a webhook secret, then a search of the logs,
the database file (raw bytes, WAL included) and every API answer collected on the way."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import (
    SSH_KEY,
    SandboxProcess,
    ServiceProcess,
    create_api_key,
    service_env,
    start_together,
    wait_for,
)

VENDOR_KEYS = {
    "vast": "vastkey-7f3a9c1e5b2d4f60a8c7e9b1d3f5a7c9",
    "fal": "falkey-2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e1b",
    "nebula": "nebkey-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
    "lambda": "secret_lambdakey-4d3c2b1a0f9e8d7c6b5a4f3e2d1c",
}
SECRET_KEY = "secretkey-5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f"


def find_secrets(text: str, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets found in clear in `text` (also their halves: no partial leaks)."""
    found = []
    for name, secret in secrets.items():
        half = len(secret) // 2
        if secret in text or secret[:half] in text or secret[half:] in text:
            found.append(name)
    return found


def test_the_search_finds_a_planted_secret() -> None:
    secrets = {"vast key": VENDOR_KEYS["vast"]}
    assert find_secrets(f'{{"msg": "calling vast with {VENDOR_KEYS["vast"]}"}}', secrets) == ["vast key"]
    assert find_secrets(f"...{VENDOR_KEYS['vast'][:20]}", secrets) == ["vast key"]
    assert find_secrets("nothing here", secrets) == []


class Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length", 0))
        Receiver.bodies.append(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


@pytest.mark.timeout(240)
def test_no_secret_in_logs_database_or_answers(tmp_path: Path, receiver: str) -> None:
    sandboxes = {vendor: SandboxProcess(vendor, tmp_path / f"{vendor}.log", offers=60, ready_after=0.3) for vendor in VENDOR_KEYS}
    service: ServiceProcess | None = None
    answers: list[str] = []
    try:
        start_together(sandboxes.values())
        database = tmp_path / "data" / "gpusupply.db"
        env = service_env(f"sqlite+aiosqlite:///{database}", tmp_path / "data", sandboxes,
                          GPUSUPPLY_LOG_FORMAT="json", GPUSUPPLY_LOG_LEVEL="debug", GPUSUPPLY_SECRET_KEY=SECRET_KEY,
                          GPUSUPPLY_ALLOW_PRIVATE_WEBHOOK_URLS="true", GPUSUPPLY_WEBHOOK_POLL_SECONDS="0.2")
        for vendor, key in VENDOR_KEYS.items():
            env[f"GPUSUPPLY_{vendor.upper()}_API_KEY"] = key
        token = create_api_key(env)
        service = ServiceProcess.serve(env, tmp_path / "serve.log").start()
        api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

        def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            response = api.request(method, path, **kwargs)
            answers.append(f"{response.headers}\n{response.text}")
            assert response.status_code < 400, (method, path, response.text)
            is_json = response.headers.get("content-type", "").startswith("application/json")
            return response.json() if is_json else {}

        hook = call("POST", "/webhooks", json={"url": receiver})
        offers = call("POST", "/get_offers", json={"compute": {"gpu_type": "RTX4090"}, "vendor": "nebula"})["offers"]
        if not offers:
            offers = call("POST", "/get_offers", json={"compute": {"gpu_type": "A100"}, "vendor": "nebula"})["offers"]
        rid = call("POST", "/procure_offer", json={"offer_id": offers[0]["offer_id"], "ssh_public_key": SSH_KEY})["resource_ids"][0]

        def status_is(*statuses: str) -> bool:
            return call("GET", f"/resources/{rid}")["status"] in statuses

        wait_for(lambda: status_is("running"), within=60, what="running", every=0.3)
        call("POST", f"/resources/{rid}/stop")
        wait_for(lambda: status_is("stopped"), within=60, what="stopped", every=0.3)
        call("POST", f"/resources/{rid}/start")
        wait_for(lambda: status_is("running"), within=60, what="running again", every=0.3)
        call("DELETE", f"/resources/{rid}")
        wait_for(lambda: status_is("deleted"), within=60, what="deleted", every=0.3)
        call("GET", f"/resources/{rid}/events")
        wait_for(lambda: Receiver.bodies, within=30, what="a webhook delivery")
        call("GET", f"/webhooks/{hook['webhook_id']}/deliveries")
        call("GET", "/metrics")
        call("GET", "/available_vendors")
        time.sleep(0.5)  # let the last log lines reach the file
    finally:
        if service is not None:
            service.stop()
        for sandbox in sandboxes.values():
            sandbox.stop()

    secrets = {f"{vendor} key": key for vendor, key in VENDOR_KEYS.items()}
    secrets |= {"API token": token, "secret key": SECRET_KEY, "webhook secret": hook["secret"]}
    logs = (tmp_path / "serve.log").read_text(errors="replace")
    assert '"level"' in logs and "request_id" in logs  # JSON lines were written, with content
    assert find_secrets(logs, secrets) == [], "a secret is in the service's log"

    stored = b"".join(path.read_bytes() for path in database.parent.glob("gpusupply.db*"))
    assert len(stored) > 10_000
    assert find_secrets(stored.decode("latin-1"), secrets) == [], "a secret is in the database file"

    # The webhook secret is shown once, at creation; the API token never. Nothing else shows either.
    later = answers[1:]
    assert find_secrets("\n".join(later), secrets) == [], "a secret is in an API answer"
    assert find_secrets(answers[0], {k: v for k, v in secrets.items() if k != "webhook secret"}) == []
    delivered = b"".join(Receiver.bodies).decode()
    assert json.loads(Receiver.bodies[0]) and find_secrets(delivered, secrets) == []
