"""The sandboxes' state on disk (sandbox/state.py): a round trip, fresh id spaces, one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpusupply.sandbox.common import SandboxConfig, SimInstance
from gpusupply.sandbox.fal import FalSandbox
from gpusupply.sandbox.nebula import NebulaSandbox
from gpusupply.sandbox.state import ID_SPACE_SIZE, SandboxDirectoryBusy, SandboxStore
from gpusupply.sandbox.vast import VastSandbox


@pytest.fixture
def store(tmp_path: Path):
    opened = SandboxStore.open(tmp_path / "sandboxes")
    yield opened
    opened.close()


def test_state_round_trip_and_a_fresh_id_space(store: SandboxStore) -> None:
    first = NebulaSandbox(SandboxConfig(id_base=store.new_id_base("nebula")))
    store.restore(first)
    instance = SimInstance("n-1", "key", 1000.0, 3.0, marker="gpusupply-x", data={"public_ipv4": "203.0.113.9"})
    first.record_create(instance, product="p")
    first.clock.advance(5)
    assert store.save(first) and not store.save(first)  # written once, then only on a change
    again = NebulaSandbox(SandboxConfig(id_base=store.new_id_base("nebula")))
    assert store.restore(again) == 1
    assert again.instances["n-1"] == instance and again.clock.offset == 5
    assert [e.instance_id for e in again.creates] == ["n-1"]
    assert again.config.id_base != first.config.id_base and again.config.id_base % ID_SPACE_SIZE == 0
    assert set(again.id_bases) == {first.config.id_base, again.config.id_base}


def test_id_spaces_keep_ids_apart() -> None:
    """Two processes (or runs) draw different id spaces, so their instance ids differ."""
    one, two = (SandboxConfig(id_base=b) for b in (ID_SPACE_SIZE, 2 * ID_SPACE_SIZE))
    assert VastSandbox(one).next_seq() != VastSandbox(two).next_seq()
    assert FalSandbox(one)._new_id() != FalSandbox(two)._new_id()
    assert NebulaSandbox(one)._id_rng.random() != NebulaSandbox(two)._id_rng.random()
    # A seeded run without an id space keeps its ids (the tests and benchmarks rely on them).
    assert VastSandbox(SandboxConfig()).next_seq() == 1


def test_a_second_process_is_refused_with_the_first_ones_pid(store: SandboxStore) -> None:
    assert SandboxStore.open(store.directory) is store  # this process again: the same store
    code = f"from gpusupply.sandbox.state import SandboxStore; SandboxStore.open(__import__('pathlib').Path({str(store.directory)!r}))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and SandboxDirectoryBusy.__name__ in other.stderr
    assert f"run by another process (pid {__import__('os').getpid()})" in other.stderr


def test_an_unreadable_state_is_a_clear_error(store: SandboxStore) -> None:
    store.path("fal").write_text("{not json")
    with pytest.raises(RuntimeError, match="cannot read the sandbox state .*fal.json"):
        store.restore(FalSandbox(SandboxConfig()))
