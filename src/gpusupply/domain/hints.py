"""Wake the local engine right after a write, instead of waiting for its next poll.

Services call `hint()` after committing work for the engine (a procurement, a delete). Only the
engine in this process hears it; engines in other processes find the work on their next poll.
"""

from __future__ import annotations

import asyncio

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
