"""Wake the local engine right after a write, instead of waiting for its next poll.

Services call `hint()` after committing work for the engine (a procurement, a delete). Only the
engine in this process hears it; engines in other processes find the work on their next poll.
`hint_after_commit(session)` hints once the session's transaction commits (a fleet member lost).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

# One event per event loop (tests run many loops in one process).
_events: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def _get() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    event = _events.get(loop)
    if event is None:
        for stale in [lp for lp in _events if lp.is_closed()]:
            del _events[stale]
        event = _events[loop] = asyncio.Event()
    return event


def hint() -> None:
    try:
        _get().set()
    except RuntimeError:  # no running loop: nobody to wake
        pass


async def wait_for_hint(seconds: float) -> bool:
    """Sleep until hinted or `seconds` pass; True when a hint came."""
    event = _get()
    try:
        await asyncio.wait_for(event.wait(), seconds)
        return True
    except TimeoutError:
        return False
    finally:
        event.clear()


# ----- a hint once a transaction commits ---------------------------------------------------------
# A status change that the fleet job must act on (a member lost) asks for a hint when its
# transaction commits: hinted earlier, the woken job could read the database before the change.
_HINT_AFTER_COMMIT = "gpusupply_hint_after_commit"


def hint_after_commit(session: AsyncSession) -> None:
    session.info[_HINT_AFTER_COMMIT] = True


@sa_event.listens_for(Session, "after_commit")
def _hint_on_commit(session: Session) -> None:
    if session.info.pop(_HINT_AFTER_COMMIT, False):
        hint()


@sa_event.listens_for(Session, "after_rollback")
def _no_hint_on_rollback(session: Session) -> None:
    session.info.pop(_HINT_AFTER_COMMIT, None)
