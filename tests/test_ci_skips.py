"""tests/ci_skips.py: under CI a skip fails unless the test is marked optional; outside CI skips stay skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = """
import pytest

def test_skipped():
    pytest.skip("no tool here")

@pytest.mark.optional
def test_optional():
    pytest.skip("opt-in")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_runs():
    assert True
"""


def run(tmp_path: Path, ci: bool) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "1"
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.ci_skips", "-p", "no:randomly", "-p", "no:cacheprovider",
         str(tmp_path / "test_sample.py"), "-rfs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    return result.stdout


@pytest.mark.parametrize(("ci", "closing"), [(True, "1 failed, 1 passed, 1 skipped, 1 xfailed"), (False, "1 passed, 2 skipped, 1 xfailed")])
def test_a_skip_fails_under_ci_unless_optional(tmp_path: Path, ci: bool, closing: str) -> None:
    out = run(tmp_path, ci)
    assert closing in out, out
    if ci:
        assert "FAILED" in out and "test_skipped" in out and "not marked @pytest.mark.optional: Skipped: no tool here" in out


def test_the_fal_seed_pages_are_found_beside_the_repository() -> None:
    from tests.sandbox.test_fal import SEEDS

    assert SEEDS == REPO.parent / "shared" / "seeds"
    assert any(SEEDS.glob("004_*.txt")), f"no seed pages in {SEEDS}"
