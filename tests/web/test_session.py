"""The console session (pure parts): cookie format, CSRF tokens, origin and redirect checks."""

from __future__ import annotations

import pytest

from gpusupply.web.session import (
    ConsoleSession,
    decode_session,
    encode_session,
    new_session,
    safe_return_path,
    same_origin,
)

TOKEN = "gsk_" + "A" * 43


def test_cookie_round_trip_and_per_session_csrf() -> None:
    first, second = new_session(f"  {TOKEN}\n"), new_session(TOKEN)
    assert first.token == TOKEN and first.nonce != second.nonce
    assert decode_session(encode_session(first)) == first
    assert first.csrf_token != second.csrf_token  # a new sign-in, a new token
    assert TOKEN not in first.csrf_token and len(first.csrf_token) == 64
    assert first.csrf_matches(first.csrf_token)
    assert not first.csrf_matches(second.csrf_token)
    assert not first.csrf_matches(None) and not first.csrf_matches("")


@pytest.mark.parametrize(
    "value",
    [None, "", TOKEN, "short." + TOKEN, "n" * 20 + ".", "n" * 20 + ".not-a-key", "n" * 20 + "." + TOKEN + ";x", "é" * 20 + "." + TOKEN],
)
def test_malformed_cookies_are_no_session(value: str | None) -> None:
    assert decode_session(value) is None


def test_csrf_depends_on_key_and_nonce() -> None:
    nonce = "n" * 24
    assert ConsoleSession(nonce, TOKEN).csrf_token == ConsoleSession(nonce, TOKEN).csrf_token
    assert ConsoleSession(nonce, TOKEN).csrf_token != ConsoleSession(nonce, "gsk_" + "B" * 43).csrf_token


@pytest.mark.parametrize(
    ("origin", "referer", "host", "allowed"),
    [
        ("http://127.0.0.1:8080", None, "127.0.0.1:8080", True),
        ("https://gpus.example.com", None, "GPUS.example.com", True),  # TLS ended at a proxy: the host still matches
        ("http://evil.example", None, "127.0.0.1:8080", False),
        ("http://127.0.0.1:8081", None, "127.0.0.1:8080", False),
        ("null", None, "127.0.0.1:8080", False),  # sandboxed frames, data: URLs
        (None, "http://127.0.0.1:8080/console/offers", "127.0.0.1:8080", True),
        (None, "http://evil.example/console/offers", "127.0.0.1:8080", False),
        (None, None, "127.0.0.1:8080", True),  # not a browser; the CSRF token still decides
        ("http://127.0.0.1:8080", None, None, False),
    ],
)
def test_same_origin(origin: str | None, referer: str | None, host: str | None, allowed: bool) -> None:
    assert same_origin(origin, referer, host) is allowed


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/console/resources", "/console/resources"),
        ("/console/resources?status=running&page=2", "/console/resources?status=running&page=2"),
        ("/console", "/console"),
        (None, "/fallback"),
        ("", "/fallback"),
        ("/consoleevil", "/fallback"),
        ("/docs", "/fallback"),
        ("https://evil.example/console/x", "/fallback"),
        ("//evil.example/console/", "/fallback"),
        ("/console\\..\\x", "/fallback"),
        ("/console/x\r\nSet-Cookie: a=b", "/fallback"),
    ],
)
def test_safe_return_path(path: str | None, expected: str) -> None:
    assert safe_return_path(path, "/fallback") == expected
