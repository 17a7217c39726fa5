"""Deciding that an instance is gone: never on one answer.

A vendor's "not found" can be wrong for a moment (a replica that lags, a proxy, a bug), and acting
on it ends a resource whose instance keeps running: the reconciler would then take the instance
for an orphan and delete the user's machine, or (without a marker) leave it billing unmanaged.
So an instance is gone only when independent observations agree:

- the vendor's own terminal status (preempted, terminated) — one answer is enough;
- or a "not found" read, a second "not found" read at least `absence_confirm_seconds` later, and a
  complete listing (taken after the first read) that does not show it either.

Until then the row keeps its status and records `absent_since` (the first unconfirmed "not
found"). Any sighting of the instance clears it.

A deletion is confirmed the same way: after the vendor accepted the delete, a read that answers the
instance terminated, or "not found" and absent from a listing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpusupply.core.errors import VendorUnavailable
from gpusupply.core.states import InstanceState
from gpusupply.engine.batch_reads import shared_listing
from gpusupply.vendors.base import VendorInstance

log = logging.getLogger(__name__)

GONE_STATES = frozenset({InstanceState.TERMINATED})


def listing_problem(listing: Any) -> str | None:
    """Why a list cannot be trusted as the complete truth, or None. Pure."""
    if not isinstance(listing, list):
        return f"list is a {type(listing).__name__}, not a list"
    seen: set[str] = set()
    for item in listing:
        if not isinstance(item, VendorInstance) or not item.vendor_instance_id:
            return "list has an entry without an instance id"
        if item.vendor_instance_id in seen:
            return f"list repeats instance {item.vendor_instance_id}"
        seen.add(item.vendor_instance_id)
    return None


def shown_in(listing: Sequence[VendorInstance], vendor_instance_id: str) -> VendorInstance | None:
    """The listed instance with that id, unless the list shows it gone. Pure."""
    for instance in listing:
        if instance.vendor_instance_id == vendor_instance_id and instance.state not in GONE_STATES:
            return instance
    return None


async def listed(adapter: Any, vendor_instance_id: str, confirming: str) -> VendorInstance | None:
    """The instance as a fresh, complete listing shows it (None: not shown). A listing that cannot be
    trusted confirms nothing: it raises VendorUnavailable, like the vendor's other errors."""
    listing = await shared_listing(adapter)
    problem = listing_problem(listing)
    if problem:
        raise VendorUnavailable(adapter.vendor, f"the instance list cannot confirm {confirming}: {problem}")
    return shown_in(listing, vendor_instance_id)


@dataclass(frozen=True, slots=True)
class Sighting:
    """What the vendor shows of one instance, once absence rules are applied."""

    instance: VendorInstance | None  # the instance as shown (None: not shown)
    gone: bool  # confirmed gone (terminal status, or absence confirmed)
    absent_since: datetime | None  # the row's new `absent_since`
    note: str | None = None  # why, for the row's status message

    @property
    def unconfirmed(self) -> bool:
        """Not shown, but not confirmed gone either: look again at `absent_since` + the delay."""
        return self.instance is None and not self.gone


def seen(instance: VendorInstance) -> Sighting:
    return Sighting(instance, instance.state in GONE_STATES, None)


async def judge_not_found(
    adapter: Any,
    vendor_instance_id: str,
    *,
    absent_since: datetime | None,
    now: datetime,
    confirm_seconds: float,
    listed_absent: bool = False,
) -> Sighting:
    """A read just answered "not found". Gone only if an earlier "not found" is at least
    `confirm_seconds` old and a listing agrees (`listed_absent`: the caller's own listing, taken
    after that earlier read, already did not show it). Vendor errors propagate."""
    if absent_since is None or (now - absent_since).total_seconds() < confirm_seconds:
        return Sighting(None, False, absent_since or now, "the vendor answered not found; confirming before ending the resource")
    if not listed_absent:
        shown = await listed(adapter, vendor_instance_id, "an absence")
        if shown is not None:
            log.warning("vendor answered not found for an instance its list shows", extra={"vendor": adapter.vendor, "instance": vendor_instance_id})
            return Sighting(shown, False, None, "the vendor answered not found, but its instance list shows the instance")
    waited = (now - absent_since).total_seconds()
    return Sighting(None, True, absent_since, f"not found twice {waited:.0f} s apart and absent from the vendor's instance list")


async def sight(
    adapter: Any,
    vendor_instance_id: str,
    answer: VendorInstance | None,
    *,
    absent_since: datetime | None,
    now: datetime,
    confirm_seconds: float,
) -> Sighting:
    """Apply the absence rules to a read's answer (None: the read said not found)."""
    if answer is not None:
        return seen(answer)
    return await judge_not_found(adapter, vendor_instance_id, absent_since=absent_since, now=now, confirm_seconds=confirm_seconds)


async def confirm_deleted(adapter: Any, vendor_instance_id: str, answer: VendorInstance | None) -> tuple[bool, str | None]:
    """After the vendor accepted a delete: (confirmed gone, the vendor's last word on it).

    `answer` is a read made after the delete (None: not found). Terminated is the vendor's own
    confirmation, unless the instance lingers (ended, but kept until deleted: the delete was not
    carried out); "not found" must be confirmed by a listing that does not show it either (a delete
    acknowledged but not carried out would otherwise be taken for done). Vendor errors propagate."""
    if answer is not None:
        return answer.state in GONE_STATES and not answer.lingers, answer.raw_status
    shown = await listed(adapter, vendor_instance_id, "the delete")
    if shown is not None:
        log.warning("vendor answered not found after a delete, but still lists the instance", extra={"vendor": adapter.vendor, "instance": vendor_instance_id})
        return False, shown.raw_status
    return True, None
