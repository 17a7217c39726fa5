"""Logging: secrets never reach a log line; JSON lines carry the request id and extra fields."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from gpusupply.logging import (
    REDACTED,
    SECRETS,
    JsonFormatter,
    RedactingFilter,
    RequestContextFilter,
    TextFormatter,
    build_handler,
    configure_logging,
    redact,
    register_secret,
    request_id_var,
)
from gpusupply.settings import Settings
from tests.conftest import free_port

TOKEN = "gsk_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    SECRETS.clear()
    yield
    SECRETS.clear()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {TOKEN} used", f"key gsk_{REDACTED} used"),
        ("display prefix gsk_AbCd1234 stays", "display prefix gsk_AbCd1234 stays"),
        ("Authorization: Bearer abc.def", f"Authorization: Bearer {REDACTED}"),
        ("authorization: Key fal-key:secret", f"authorization: Key {REDACTED}"),
        ("{'Authorization': 'opaque-value'}", f"{{'Authorization': '{REDACTED}'}}"),
        ("[(b'authorization', b'Bearer xyz'), (b'host', b'h')]", f"[(b'authorization', b'{REDACTED}'), (b'host', b'h')]"),
        ("GET /api/v0/instances/?api_key=abc123&owner=me", f"GET /api/v0/instances/?api_key={REDACTED}&owner=me"),
        ('{"api_key": "abc123", "gpu": "H100"}', f'{{"api_key": "{REDACTED}", "gpu": "H100"}}'),
        ("password=hunter2 token=t0k", f"password={REDACTED} token={REDACTED}"),
        ("authorization failed, retrying", "authorization failed, retrying"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redaction_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_registered_secrets_are_removed_whole() -> None:
    register_secret("vast-live-key-0123456789")
    register_secret("vast-live-key-0123456789-longer")
    register_secret("short")  # too short to redact safely: ignored
    assert redact("x vast-live-key-0123456789-longer y") == f"x {REDACTED} y"
    assert redact("key=vast-live-key-0123456789") == f"key={REDACTED}"
    assert redact("a short word") == "a short word"


def record(message: str, *args: Any, exc: BaseException | None = None, **extra: Any) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    made = logging.LogRecord("gpusupply.test", logging.WARNING, __file__, 1, message, args or None, exc_info)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_the_filter_cleans_message_arguments_extras_and_tracebacks() -> None:
    register_secret("nebula-secret-value")
    try:
        raise RuntimeError(f"vendor refused nebula-secret-value ({TOKEN})")
    except RuntimeError as exc:
        made = record("calling %s with %s", "nebula", "nebula-secret-value", exc=exc,
                      headers={"Authorization": f"Bearer {TOKEN}", "Accept": "json"}, attempt=2, keys=[TOKEN])
    assert RedactingFilter().filter(made)
    assert made.getMessage() == f"calling nebula with {REDACTED}"
    assert made.headers == {"Authorization": f"Bearer gsk_{REDACTED}", "Accept": "json"}  # type: ignore[attr-defined]
    assert made.keys == [f"gsk_{REDACTED}"] and made.attempt == 2  # type: ignore[attr-defined]
    assert made.exc_text and "RuntimeError" in made.exc_text
    assert "nebula-secret-value" not in made.exc_text and TOKEN not in made.exc_text


def test_json_lines() -> None:
    made = record("vendor %s slow", "vast", vendor="vast", seconds=1.5, resource_id="r-1")
    RequestContextFilter().filter(made)
    line = json.loads(JsonFormatter().format(made))
    assert line["message"] == "vendor vast slow" and line["level"] == "warning" and line["logger"] == "gpusupply.test"
    assert line["time"].endswith("Z") and line["request_id"] is None
    assert (line["vendor"], line["seconds"], line["resource_id"]) == ("vast", 1.5, "r-1")
    try:
        raise ValueError("broken")
    except ValueError as exc:
        failed = record("it failed", exc=exc, odd=object())
    line = json.loads(JsonFormatter().format(failed))
    assert "ValueError: broken" in line["exc_info"] and line["odd"].startswith("<object")


def test_the_request_id_comes_from_the_context() -> None:
    token = request_id_var.set("req-42")
    try:
        made = record("inside a request")
        RequestContextFilter().filter(made)
    finally:
        request_id_var.reset(token)
    assert made.request_id == "req-42"  # type: ignore[attr-defined]
    assert "gpusupply.test [req-42]: inside a request" in TextFormatter().format(made)
    explicit = record("explicit", request_id="mine")
    RequestContextFilter().filter(explicit)
    assert explicit.request_id == "mine"  # type: ignore[attr-defined]


def test_text_lines_show_extra_fields() -> None:
    made = record("catalog refreshed", vendor="vast", offers=120)
    assert TextFormatter().format(made).endswith("gpusupply.test: catalog refreshed vendor=vast offers=120")
    from_uvicorn = record("Started server process [7]", color_message="Started server process [\x1b[36m%d\x1b[0m]")
    assert TextFormatter().format(from_uvicorn).endswith("gpusupply.test: Started server process [7]")


def test_configure_logging_installs_one_handler_and_registers_vendor_keys(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    settings = Settings(_env_file=None, data_dir=tmp_path, log_format="json", log_level="warning",  # type: ignore[call-arg]
                        vast_api_key=SecretStr("vast-live-key-abcdef"), secret_key=SecretStr("fernet-secret-123"))
    try:
        configure_logging(settings, stream=stream)
        configure_logging(settings, stream=stream)  # again: still one handler
        assert len(root.handlers) == 1 and root.level == logging.WARNING
        assert logging.getLogger("httpx").level == logging.WARNING
        logging.getLogger("gpusupply.x").warning("key vast-live-key-abcdef and fernet-secret-123 in %s", "a message")
        logging.getLogger("gpusupply.x").info("not shown at warning")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["message"] == f"key {REDACTED} and {REDACTED} in a message"
    with pytest.raises(ValueError, match="unknown log format"):
        build_handler("xml")
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(settings.model_copy(update={"log_level": "loud"}), stream=stream)


# ----- a real server process ---------------------------------------------------------------------
def test_serve_writes_json_lines_with_request_ids(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUSUPPLY_")}
    env.update(GPUSUPPLY_DATA_DIR=str(tmp_path / "data"), GPUSUPPLY_SANDBOX_OFFERS="50",
               GPUSUPPLY_ENABLED_VENDORS="nebula", GPUSUPPLY_LOG_LEVEL="info")
    port = free_port()
    command = [str(Path(sys.executable).parent / "gpusupply"), "serve", "--port", str(port), "--no-engine", "--log-format", "json"]
    logs = (tmp_path / "stderr.log").open("w+")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=logs, text=True)
    try:
        token = _first_key(proc, port)
        url = f"http://127.0.0.1:{port}"
        answer = httpx.get(f"{url}/available_regions", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "serve-1"})
        assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "serve-1"
        assert httpx.get(f"{url}/resources", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    logs.seek(0)
    entries = [json.loads(line) for line in logs.read().splitlines() if line.strip()]  # every line is JSON
    assert {"time", "level", "logger", "message", "request_id"} <= set(entries[0])
    (request,) = [e for e in entries if e.get("request_id") == "serve-1"]
    assert request["logger"] == "gpusupply.http" and request["route"] == "/available_regions"
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # the server's own lines too
    assert token[8:] not in json.dumps(entries)


def _first_key(proc: subprocess.Popen[str], port: int) -> str:
    """Read serve's banner up to the first key, then wait until it answers."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("gsk_"):
            token = line.strip()
            break
    else:
        raise AssertionError(f"serve exited with {proc.wait()} before printing a key")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return token
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("serve did not answer")
