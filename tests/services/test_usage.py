"""Usage reports: period and group_by parsing (tables), grouping across days and rates (pure),
CSV, and reports over stored resources with tenancy (tenant key: own; admin: all or one)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest

from gpusupply.core.errors import NotFoundError, UnprocessableError
from gpusupply.db.session import Database
from gpusupply.domain.costs import BilledInterval, Rates
from gpusupply.services.usage import (
    ResourceUsage,
    UsageReport,
    aggregate,
    parse_group_by,
    parse_instant,
    parse_period,
    to_csv,
    usage_report,
)
from tests.services.cost_helpers import (
    LIFE,
    LIFE_RUNNING_HOURS,
    LIFE_STOPPED_HOURS,
    at,
    make_resource,
    make_tenant,
    principal_for,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", utc(2026, 11, 1)),
        ("2026-11-01T12:30:00Z", utc(2026, 11, 1, 12, 30)),
        ("2026-11-01T12:30:00", utc(2026, 11, 1, 12, 30)),
        ("2026-11-01T14:30:00+02:00", utc(2026, 11, 1, 12, 30)),
    ],
)
def test_parse_instant(text: str, expected: datetime) -> None:
    assert parse_instant(text, "from") == expected


@pytest.mark.parametrize(
    ("start", "end", "expected", "error"),
    [
        (None, None, (utc(2026, 11, 1), NOW), None),
        ("2026-10-01", "2026-11-01", (utc(2026, 10, 1), utc(2026, 11, 1)), None),
        (None, "2026-10-15", (utc(2026, 10, 1), utc(2026, 10, 15)), None),
        ("2026-11-02", "2026-11-01", None, "must be before to"),
        ("2026-11-01", "2026-11-01", None, "must be before to"),
        ("2025-01-01", "2026-11-01", None, "at most 366 days"),
        ("yesterday", None, None, "from must be an ISO 8601 date or time"),
        (None, "2026-13-01", None, "to must be an ISO 8601 date or time"),
        (None, "9999-12-31T23:00:00-14:00", None, "to must be an ISO 8601 date or time"),
    ],
)
def test_parse_period(start: str | None, end: str | None, expected: tuple | None, error: str | None) -> None:
    if error is None:
        assert parse_period(start, end, NOW) == expected
    else:
        with pytest.raises(UnprocessableError, match=error):
            parse_period(start, end, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, ("vendor",)), ("", ("vendor",)), ("day", ("day",)), ("day, vendor", ("day", "vendor")), ("tenant,tenant", ("tenant",))],
)
def test_parse_group_by(text: str | None, expected: tuple[str, ...]) -> None:
    assert parse_group_by(text) == expected


@pytest.mark.parametrize("text", ["region", "vendor,colour", ","])
def test_parse_group_by_refuses_unknown_keys(text: str) -> None:
    with pytest.raises(UnprocessableError, match="group_by"):
        parse_group_by(text)


def _item(tenant: str, vendor: str, family: str, gpus: int, rates: Rates, *intervals: BilledInterval) -> ResourceUsage:
    return ResourceUsage(uuid.uuid4(), tenant, vendor, family, gpus, rates, tuple(intervals))


ACROSS_MIDNIGHT = _item("alice", "vast", "H100", 2, Rates(4.0, 0.5),
                        BilledInterval(utc(2026, 11, 1, 22), utc(2026, 11, 2, 2), False),
                        BilledInterval(utc(2026, 11, 2, 2), utc(2026, 11, 2, 4), True))
SMALL = _item("bob", "nebula", "A100", 1, Rates(1.0, 1.0), BilledInterval(utc(2026, 11, 2, 10), utc(2026, 11, 2, 13), False))


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (("vendor",), {("nebula",): (3.0, 3.0, 0.0, 3.0), ("vast",): (16.0 + 1.0, 4.0, 2.0, 8.0)}),
        (("day",), {("2026-11-01",): (8.0, 2.0, 0.0, 4.0), ("2026-11-02",): (8.0 + 1.0 + 3.0, 5.0, 2.0, 7.0)}),
        (("tenant", "day"), {("alice", "2026-11-01"): (8.0, 2.0, 0.0, 4.0), ("alice", "2026-11-02"): (9.0, 2.0, 2.0, 4.0),
                            ("bob", "2026-11-02"): (3.0, 3.0, 0.0, 3.0)}),
        (("gpu_family",), {("A100",): (3.0, 3.0, 0.0, 3.0), ("H100",): (17.0, 4.0, 2.0, 8.0)}),
    ],
)
def test_aggregate(group_by: tuple[str, ...], expected: dict[tuple[str, ...], tuple[float, float, float, float]]) -> None:
    rows = aggregate([ACROSS_MIDNIGHT, SMALL], group_by, utc(2026, 11, 1), utc(2026, 12, 1))
    got = {tuple(r.group.values()): (r.cost, r.running_hours, r.stopped_hours, r.gpu_hours) for r in rows}
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert got[key] == pytest.approx(values), key
    assert [tuple(r.group.values()) for r in rows] == sorted(expected)


def test_aggregate_clips_to_the_period() -> None:
    (row,) = aggregate([ACROSS_MIDNIGHT], ("vendor",), utc(2026, 11, 2), utc(2026, 11, 2, 3))
    assert (row.cost, row.running_hours, row.stopped_hours, row.resources) == pytest.approx((8.0 + 0.5, 2.0, 1.0, 1))
    assert aggregate([ACROSS_MIDNIGHT], ("vendor",), utc(2026, 11, 5), utc(2026, 11, 6)) == []


def test_to_csv() -> None:
    rows = aggregate([ACROSS_MIDNIGHT, SMALL], ("day", "vendor"), utc(2026, 11, 1), utc(2026, 12, 1))
    report = UsageReport(utc(2026, 11, 1), utc(2026, 12, 1), ("day", "vendor"), rows, ["alice", "bob"])
    table = list(csv.reader(io.StringIO(to_csv(report))))
    assert table[0] == ["day", "vendor", "cost_usd", "running_hours", "stopped_hours", "gpu_hours", "resources"]
    assert table[1] == ["2026-11-01", "vast", "8.000000", "2.000000", "0.000000", "4.000000", "1"]
    assert len(table) == 4


async def test_usage_report_tenancy(database: Database) -> None:
    alice_t, bob_t = await make_tenant(database, "alice"), await make_tenant(database, "bob")
    admin = principal_for(await make_tenant(database, "ops"), admin=True)
    await make_resource(database, alice_t.id, vendor="nebula", price=2.0, gpu_count=2, history=LIFE)
    await make_resource(database, alice_t.id, vendor="vast", price=1.0, storage_per_hour=0.1, history=LIFE)
    await make_resource(database, bob_t.id, vendor="fal", price=5.0, gpu_family="B200",
                        history=[(0, "provisioning"), (1, "running")])
    await make_resource(database, bob_t.id, vendor="fal", price=5.0)  # never ran: not in any report
    start, end, now = at(-1), at(10), at(10)

    mine = await usage_report(database, principal_for(alice_t), start=start, end=end, group_by=("vendor",), now=now)
    assert mine.tenants == ["alice"]
    by_vendor = {r.group["vendor"]: r for r in mine.rows}
    assert set(by_vendor) == {"nebula", "vast"}
    assert by_vendor["nebula"].cost == pytest.approx((LIFE_RUNNING_HOURS + LIFE_STOPPED_HOURS) * 2.0)
    assert by_vendor["nebula"].gpu_hours == pytest.approx(LIFE_RUNNING_HOURS * 2)
    assert by_vendor["vast"].cost == pytest.approx(LIFE_RUNNING_HOURS * 1.0 + LIFE_STOPPED_HOURS * 0.1)
    assert mine.total_cost == pytest.approx(sum(r.cost for r in mine.rows))

    everyone = await usage_report(database, admin, start=start, end=end, group_by=("tenant",), now=now)
    assert {r.group["tenant"]: r.resources for r in everyone.rows} == {"alice": 2, "bob": 1}
    assert {r.group["tenant"]: r.cost for r in everyone.rows}["bob"] == pytest.approx(9 * 5.0)
    only_bob = await usage_report(database, admin, start=start, end=end, group_by=("gpu_family",), tenant="bob", now=now)
    assert [(r.group, r.resources) for r in only_bob.rows] == [({"gpu_family": "B200"}, 1)]
    with pytest.raises(NotFoundError):
        await usage_report(database, principal_for(alice_t), start=start, end=end, tenant="bob", now=now)
    # A period after everything ended and before bob's resource ran: alice's nothing.
    later = await usage_report(database, principal_for(alice_t), start=at(7), end=at(9), now=now)
    assert later.rows == []
