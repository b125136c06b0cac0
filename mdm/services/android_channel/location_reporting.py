"""Whether a unit's Android tablets report their location with their inventory: the agent
policy's `reporting.location` (docs/android-agent-protocol.md, section 7).

A unit's own value (org_units.android_location_reporting) wins; None takes the parent's, up to
the HQ; a tree with no value anywhere does not report (a tablet's position is personal data of
whoever carries it: it is collected only where a unit decided so). A LOCATE command, sent for a
lost tablet by the hotline, asks for one fix whatever this says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.models import OrgUnit
from mdm.services.orgunits import unit_chains
from mdm.services.unit_inheritance import set_unit_flag

DEFAULT = False
# What a stored sync body holds instead of a position its unit does not collect.
NOT_KEPT = "[not kept: the unit does not report location]"


def location_reporting(session: Session, org_unit_id: int | None) -> bool:
    """What applies to the tablets of `org_unit_id` (inherited down the tree)."""
    if org_unit_id is None:
        return DEFAULT
    # The unit and those above it, nearest first, in one recursive query (never the whole tree).
    return location_reporting_along(unit_chains(session, {org_unit_id}).get(org_unit_id, []))


def location_reporting_along(chain: Sequence[OrgUnit]) -> bool:
    """What applies to the tablets of the first unit of `chain` (it, then those above it, nearest
    first), read by the caller."""
    for unit in chain:
        if unit.android_location_reporting is not None:
            return bool(unit.android_location_reporting)
    return DEFAULT


def set_location_reporting(session: Session, unit: OrgUnit, value: bool | None, *, actor: Actor) -> bool:
    """Set (True/False) or clear (None: inherit) the unit's value; audited. Returns whether it
    changed. The agents get it with their next sync (the policy version changes)."""
    return set_unit_flag(
        session,
        unit,
        "android_location_reporting",
        value,
        actor=actor,
        event="android.location_reporting_changed",
        effective=location_reporting,
    )


def without_inventory_location(raw: bytes) -> bytes:
    """The sync body as received, its inventory's position replaced by NOT_KEPT (a LOCATE result,
    which the hotline asked for, stays). Bytes that are not such a body are returned as they are."""
    if b'"location"' not in raw:
        return raw
    try:
        body = json.loads(raw)
    except ValueError:
        return raw
    inventory = body.get("inventory") if isinstance(body, dict) else None
    if not isinstance(inventory, dict) or "location" not in inventory:
        return raw
    inventory["location"] = NOT_KEPT
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
