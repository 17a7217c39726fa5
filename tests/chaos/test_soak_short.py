"""The short chaos soak in `make test`: at least 100 operations and one SIGKILL per database, with
faults on at every sandbox vendor; every figure that must be 0 is 0. `make chaos` runs the long one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.soak import SoakConfig, run_one
from tests.conftest import find_pg_bindir

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_short_soak_loses_nothing(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'soak.db'}"
    else:
        url = request.getfixturevalue("pg_url_factory")()
    config = SoakConfig(database, operations=100, kills=1, clients=6, seed=3, settle_timeout=120, faulty_settle=15)
    figures = asyncio.run(run_one(config, url, tmp_path))

    assert figures.must_be_zero() == dict.fromkeys(figures.must_be_zero(), 0), figures.explain()
    assert figures.total_operations >= 100
    assert any(kill.startswith("serve") for kill in figures.kills)
    if database == "postgres":
        assert any(kill.startswith("worker") for kill in figures.kills)
    # The run was really faulty, and work really happened.
    assert sum(n for name, n in figures.faults_injected.items() if name != "preempt") > 0
    assert figures.resources["deleted"] > 0 and len(figures.deletes_answered) > 0
    # Two fleets lived through it (scaled, sampled, deleted at the end: `must_be_zero` holds their rows).
    assert figures.operations["fleet create"] == 2 and figures.operations["fleet read"] > 0
    assert figures.operations["fleet member preempted"] > 0 and figures.fleet_events["fleet_member_lost"] > 0
    assert figures.operations["procure cluster"] > 0  # clusters too: ready whole, or rolled back to nothing
    # The second installation shared the vendor accounts the whole time, and ended as its user asked.
    assert sum(figures.other_installation.values()) >= 3 and set(figures.other_installation) <= {"deleted", "failed", "terminated"}


def test_the_report_names_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from tests.chaos.soak import Figures, report

    bad = Figures("sqlite", leaked=["vast instance 1"], server_errors=2)
    assert not bad.ok and bad.must_be_zero()["5xx answers"] == 2
    report([bad], "python -m tests.chaos.soak", Console(width=160, force_terminal=False))
    out = capsys.readouterr().out
    for figure in ("leaked instances", "duplicate instances (alive at once)", "lost deletes", "5xx answers", "stuck resources",
                   "creates repeated after the first instance was gone", "fleets seen above their size", "fleets not deleted at the end"):
        assert figure in out
    assert "leaked: vast instance 1" in out




@pytest.mark.parametrize(
    ("fault", "seconds"),
    [("sqlite-lock", 6.0), pytest.param("pg-stop", 8.0, marks=pytest.mark.postgres),
     pytest.param("pg-restart-twice", 0.0, marks=pytest.mark.postgres)],
)
def test_short_soak_survives_a_database_outage(fault: str, seconds: float, tmp_path: Path) -> None:
    """The database fails in the middle of procurements and deletes (a PostgreSQL of the test's own,
    which it stops and starts): 503 + Retry-After meanwhile, never another 5xx; nothing restarted;
    afterwards nothing lost, leaked or duplicated."""
    from tests.chaos.soak import FAULT_DATABASE, database_for

    database = FAULT_DATABASE[fault]
    if database == "postgres" and find_pg_bindir() is None:
        pytest.skip("PostgreSQL binaries not found")
    config = SoakConfig(database, operations=60, kills=0, clients=6, seed=5, settle_timeout=120, faulty_settle=10,
                        db_fault=fault, outage_seconds=seconds)
    with database_for(database, tmp_path) as (url, server):
        figures = asyncio.run(run_one(config, url, tmp_path, server))

    assert figures.must_be_zero() == dict.fromkeys(figures.must_be_zero(), 0), figures.explain()
    assert len(figures.db_outages) == 1, figures.db_outages
    assert figures.total_operations >= 60
    assert figures.resources["deleted"] > 0 and len(figures.deletes_answered) > 0


def test_duplicates_are_instances_of_one_marker_alive_at_once() -> None:
    from tests.chaos.soak import overlapping_instances

    def instance(iid: str, created: float, ended: float | None, marker: str = "m") -> dict:
        return {"id": iid, "account": "a", "marker": marker, "created_at": created, "ended_at": ended}

    recreated = {"instances": [instance("1", 0, 5), instance("2", 6, None)]}  # the first was gone: a re-create
    overlapping = {"instances": [instance("1", 0, 9), instance("2", 6, None)]}
    still_alive = {"instances": [instance("1", 0, None), instance("2", 6, 8)]}
    others = {"instances": [instance("1", 0, None), instance("2", 6, None, marker="n")]}
    assert overlapping_instances(recreated, "a") == [] and overlapping_instances(others, "a") == []
    assert len(overlapping_instances(overlapping, "a")) == 1 and len(overlapping_instances(still_alive, "a")) == 1
