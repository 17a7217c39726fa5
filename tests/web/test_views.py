"""How the console shows things (pure): statuses, actions, durations, prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpusupply.core.states import ResourceStatus
from gpusupply.vendors.base import Capabilities
from gpusupply.web.views import (
    ACTION_TEXT,
    STATUS_DISPLAY,
    available_actions,
    format_duration,
    gpu_text,
    location_text,
    money,
    resource_label,
    running_seconds,
    status_display,
)

FULL = Capabilities(stop_start=True, reboot=True, idempotency_key=False, marker=True, spot=True)
NO_STOP = Capabilities(stop_start=False, reboot=False, idempotency_key=True, marker=False, spot=False)
REBOOT_ONLY = Capabilities(stop_start=False, reboot=True, idempotency_key=False, marker=True, spot=False)


def test_every_status_has_a_symbol_and_words() -> None:
    assert set(STATUS_DISPLAY) == {s.value for s in ResourceStatus}
    for display in STATUS_DISPLAY.values():
        assert display.symbol and display.meaning.endswith(".")
        assert display.tone in {"ok", "busy", "idle", "ended", "bad"}
    assert status_display("from-the-future").symbol == "?"


@pytest.mark.parametrize(
    ("status", "capabilities", "actions"),
    [
        ("running", FULL, ["stop", "reboot", "delete"]),
        ("running", NO_STOP, ["delete"]),
        ("running", REBOOT_ONLY, ["reboot", "delete"]),
        ("running", None, ["delete"]),  # vendor not enabled in this process
        ("stopped", FULL, ["start", "delete"]),
        ("stopped", NO_STOP, ["delete"]),
        ("pending", FULL, ["delete"]),
        ("provisioning", FULL, ["delete"]),
        ("stopping", FULL, ["delete"]),  # force is offered in the confirmation
        ("rebooting", FULL, ["delete"]),
        ("deleting", FULL, []),
        ("deleted", FULL, []),
        ("failed", FULL, []),
        ("terminated", FULL, []),
        ("weird", FULL, []),
    ],
)
def test_available_actions(status: str, capabilities: Capabilities | None, actions: list[str]) -> None:
    assert available_actions(status, capabilities) == actions
    assert set(actions) <= set(ACTION_TEXT)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (-5, "under a minute"),
        (59.9, "under a minute"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h 00 min"),
        (3600 * 3 + 5 * 60 + 59, "3 h 05 min"),
        (86400 * 2 + 3600 * 4 + 120, "2 d 4 h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_running_seconds() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = start + timedelta(hours=2)
    assert running_seconds(None, None, now) is None
    assert running_seconds(start, None, now) == 7200
    assert running_seconds(start, start + timedelta(minutes=30), now) == 1800
    assert running_seconds(now, None, start) == 0  # clocks a little apart never go negative


@pytest.mark.parametrize(
    ("amount", "per", "text"),
    [
        (None, "", "—"),
        (0, "", "$0.00"),
        (1.93, "", "$1.93"),
        (1234.5, "h", "$1,234.50/h"),
        (0.35, "", "$0.35"),
        (0.1, "", "$0.10"),
        (0.05, "h", "$0.05/h"),
        (0.0042, "", "$0.0042"),
        (0.00001, "", "$0.00"),
    ],
)
def test_money(amount: float | None, per: str, text: str) -> None:
    assert money(amount, per=per) == text


def test_labels() -> None:
    assert gpu_text("H100", "nvidia-h100-sxm5-80gb", 8) == "8 × H100"
    assert gpu_text(None, "nvidia-h100-sxm5-80gb", None) == "1 × nvidia-h100-sxm5-80gb"
    assert gpu_text(None, None, 2) == "2 × GPU"
    assert location_text("Texas, US", "US") == "Texas, US (US)"
    assert location_text(None, "EU") == "EU" and location_text(None, None) == "—"
    assert resource_label("trainer", "x") == "trainer"
    assert resource_label(None, "9c0ea45f-1c4a-4150-9ad1-87a35a4aca89") == "resource 9c0ea45f"
