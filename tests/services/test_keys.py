"""API keys: hashed at rest, shown once, revocable; tenants isolated by key."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gpusupply.core.errors import ConflictError, NotFoundError, Unauthorized, UnprocessableError
from gpusupply.db.models import ApiKey, utcnow
from gpusupply.db.session import Database
from gpusupply.services.keys import (
    any_key_exists,
    authenticate,
    bearer_token,
    create_key,
    hash_token,
    list_keys,
    revoke_key,
)
from gpusupply.services.tenants import get_or_create_tenant, list_tenants


async def test_create_and_authenticate(database: Database) -> None:
    assert not await any_key_exists(database)
    info, token = await create_key(database, "ci", tenant="team-a")
    assert token.startswith("gsk_") and len(token) >= 40
    assert info.prefix == token[:12] and info.tenant == "team-a" and not info.is_admin
    principal = await authenticate(database, f"Bearer {token}")
    assert principal.tenant_name == "team-a" and principal.key_id == info.id
    assert await any_key_exists(database)


async def test_only_the_hash_is_stored(database: Database) -> None:
    _, token = await create_key(database, "secret-check")
    async with database.session() as session:
        row = (await session.execute(select(ApiKey))).scalar_one()
    assert row.token_hash == hash_token(token)
    assert token not in {row.token_hash, row.prefix, row.name}


async def test_tenant_defaults_to_the_key_name_and_is_reused(database: Database) -> None:
    first, _ = await create_key(database, "ops")
    second, _ = await create_key(database, "ops-2", tenant="ops", admin=True)
    assert first.tenant == second.tenant == "ops" and second.is_admin
    assert [t.name for t in await list_tenants(database)] == ["ops"]
    assert (await get_or_create_tenant(database, "ops")).name == "ops"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Not authenticated"),
        ("", "Not authenticated"),
        ("Basic dXNlcjpwYXNz", "Invalid authentication credentials"),
        ("Bearer", "Invalid authentication credentials"),
        ("Bearer not-a-token", "Invalid authentication credentials"),
        ("Bearer gsk_short", "Invalid authentication credentials"),
        ("Bearer gsk_" + "a" * 43 + " extra", "Invalid authentication credentials"),
    ],
)
def test_malformed_headers(header: str | None, message: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        bearer_token(header)
    assert caught.value.detail == message
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}


async def test_unknown_and_revoked_keys(database: Database) -> None:
    with pytest.raises(Unauthorized):
        await authenticate(database, "Bearer gsk_" + "b" * 43)
    info, token = await create_key(database, "temp")
    assert (await revoke_key(database, info.prefix)).revoked_at is not None
    with pytest.raises(Unauthorized, match="revoked"):
        await authenticate(database, f"Bearer {token}")
    with pytest.raises(ConflictError, match="already revoked"):
        await revoke_key(database, str(info.id))
    with pytest.raises(NotFoundError):
        await revoke_key(database, "gsk_nothing")
    assert not await any_key_exists(database)
    assert [k.revoked_at is not None for k in await list_keys(database)] == [True]


async def test_scheme_is_case_insensitive(database: Database) -> None:
    _, token = await create_key(database, "case")
    assert (await authenticate(database, f"bearer {token}")).key_name == "case"


@pytest.mark.parametrize(("name", "tenant"), [("", None), ("x" * 101, None), ("ok", "bad name!"), ("ok", "")])
async def test_bad_names(database: Database, name: str, tenant: str | None) -> None:
    with pytest.raises(UnprocessableError):
        await create_key(database, name, tenant=tenant)
    assert await list_keys(database) == []


async def test_a_checked_key_is_remembered_briefly_and_revocation_elsewhere_lands(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's revocation (a direct UPDATE here) is honoured once the memory expires;
    a revocation through revoke_key in this process is honoured at once (test_auth.py)."""
    import time as real_time

    from sqlalchemy import update

    from gpusupply.services import keys

    _, token = await create_key(database, "cached")
    principal = await authenticate(database, f"Bearer {token}")
    async with database.transaction() as session:
        await session.execute(update(ApiKey).where(ApiKey.token_hash == keys.hash_token(token)).values(revoked_at=utcnow()))
    assert await authenticate(database, f"Bearer {token}") == principal  # remembered
    later = real_time.monotonic() + keys.AUTH_CACHE_SECONDS + 0.1
    monkeypatch.setattr(keys.time, "monotonic", lambda: later)
    with pytest.raises(Unauthorized, match="revoked"):
        await authenticate(database, f"Bearer {token}")


async def test_requests_that_miss_together_share_one_database_read(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy key whose memory expired is read once, not once per request in flight; a refusal
    reaches every waiter and is not remembered."""
    import asyncio

    from gpusupply.services import keys

    reads: list[str] = []
    real_read = keys._authenticate_in_database

    async def counted_read(db: Database, token_hash: str) -> keys.Principal:
        reads.append(token_hash)
        return await real_read(db, token_hash)

    monkeypatch.setattr(keys, "_authenticate_in_database", counted_read)
    keys._recent.clear()
    _, token = await create_key(database, "busy")
    principals = await asyncio.gather(*(authenticate(database, f"Bearer {token}") for _ in range(20)))
    assert len(set(principals)) == 1 and principals[0].key_name == "busy"
    assert len(reads) == 1
    assert await authenticate(database, f"Bearer {token}") == principals[0]  # remembered: no new read
    assert len(reads) == 1

    unknown = "gsk_" + "x" * 43
    refusals = await asyncio.gather(*(authenticate(database, f"Bearer {unknown}") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, Unauthorized) for r in refusals)
    assert len(reads) == 2
    with pytest.raises(Unauthorized):
        await authenticate(database, f"Bearer {unknown}")
    assert len(reads) == 3  # a refusal is read again next time, never remembered


async def test_a_revocation_here_is_not_undone_by_a_read_in_flight(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that started before this process revoked the key is neither joined by later
    requests nor remembered: they read again and see the revocation."""
    import asyncio

    from gpusupply.services import keys

    keys._recent.clear()
    _, token = await create_key(database, "revoked-meanwhile")
    first_read_done, release = asyncio.Event(), asyncio.Event()
    reads = 0
    real_read = keys._authenticate_in_database

    async def slow_first_read(db: Database, token_hash: str) -> keys.Principal:
        nonlocal reads
        reads += 1
        principal = await real_read(db, token_hash)
        if reads == 1:
            first_read_done.set()
            await release.wait()  # the first read answers (not revoked) only after the revocation
        return principal

    monkeypatch.setattr(keys, "_authenticate_in_database", slow_first_read)
    before = asyncio.create_task(authenticate(database, f"Bearer {token}"))
    await first_read_done.wait()
    await revoke_key(database, token[: keys.DISPLAY_PREFIX_LENGTH])
    with pytest.raises(Unauthorized, match="revoked"):
        await authenticate(database, f"Bearer {token}")  # its own read, not the one in flight
    release.set()
    assert (await before).key_name == "revoked-meanwhile"  # it was valid when that read was made
    with pytest.raises(Unauthorized, match="revoked"):
        await authenticate(database, f"Bearer {token}")  # and that answer was not remembered
    assert reads == 3
