"""The browser tests' setup: with no Chromium they skip locally and fail loudly under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web import browser


@pytest.fixture
def no_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "missing-chromium")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called chromium on it either


def test_a_missing_browser_skips_outside_ci(no_chromium: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make test"):
        browser.require_chromium()


def test_a_missing_browser_fails_under_ci(no_chromium: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="Chromium not found"):
        browser.require_chromium()


def test_the_configured_browser_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    executable = tmp_path / "chromium"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    monkeypatch.setattr(browser, "CHROMIUM", executable)
    assert browser.require_chromium() == executable
