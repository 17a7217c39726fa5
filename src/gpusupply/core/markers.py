"""Our marker on vendor instances: "gpusupply-<resource id>-<installation id>". Pure.

The marker is the name/label a vendor keeps on an instance (Vast `label`, Nebula `instance_name`),
so a listing can be matched to our rows and a lost create found again. It names the installation,
so that installations sharing one vendor account never take each other's instances for orphans.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

MARKER_PREFIX = "gpusupply-"
_UUID_LEN = 36
# An installation id: 8 lowercase hex characters, so a marker stays a valid hostname label
# (Nebula: 63 characters; Lambda: 64): "gpusupply-<resource uuid>-<installation>" is 55.
INSTALLATION_ID_LEN = 8


def marker_for(resource_id: UUID, installation_id: str | None = None) -> str:
    """The name/label we put on a vendor instance so that listing can find it and match it to us.

    It names the installation too, so that two installations sharing one vendor account never take
    each other's instances for orphans. Markers without it (made before installations were named)
    are still read by `parse_marker`."""
    marker = f"{MARKER_PREFIX}{resource_id}"
    return f"{marker}-{installation_id}" if installation_id else marker


@dataclass(frozen=True, slots=True)
class Marker:
    resource_id: UUID
    installation_id: str | None  # None: a marker made before installations were named


def parse_marker(marker: str | None) -> Marker | None:
    """Our resource id and installation from a vendor name/label, or None when it is no marker of ours."""
    if not marker or not marker.startswith(MARKER_PREFIX):
        return None
    rest = marker[len(MARKER_PREFIX):]
    try:
        resource_id = UUID(rest[:_UUID_LEN])
    except ValueError:
        return None
    suffix = rest[_UUID_LEN:]
    if not suffix:
        return Marker(resource_id, None)
    installation = suffix[1:]
    if suffix[0] != "-" or len(installation) != INSTALLATION_ID_LEN or not all(c in "0123456789abcdef" for c in installation):
        return None
    return Marker(resource_id, installation)


def resource_id_from_marker(marker: str | None) -> UUID | None:
    """Our resource id from a vendor name/label (any installation), or None when it is no marker."""
    parsed = parse_marker(marker)
    return parsed.resource_id if parsed is not None else None
