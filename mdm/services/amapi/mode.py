"""Which Android path a unit's tablets take: Hikeshi's agent ('agent', closed networks) or the
Android Management API ('amapi', tablets with Google Mobile Services and an internet path).

A unit's own value (org_units.android_mode) wins; None takes the parent's, up to the HQ; a tree
with no value anywhere uses the agent, the path that needs nothing from Google.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import AndroidMode, OrgUnit
from mdm.services.orgunits import unit_chains
from mdm.services.unit_inheritance import chain


class ModeError(ValueError):
    """A mode that is not one of AndroidMode.ALL."""


def android_mode(session: Session, org_unit_id: int | None) -> str:
    """The mode that applies to the Android tablets of `org_unit_id` (inherited down the tree)."""
    if org_unit_id is None:
        return AndroidMode.DEFAULT
    for unit in unit_chains(session, {org_unit_id}).get(org_unit_id, []):
        if unit.android_mode is not None:
            return unit.android_mode
    return AndroidMode.DEFAULT


def amapi_unit_ids(session: Session) -> list[int]:
    """Every unit whose tablets use AMAPI (its own value or an inherited one), in id order."""
    rows = session.execute(select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.android_mode)).all()
    parents = {row.id: row.parent_id for row in rows}
    own = {row.id: row.android_mode for row in rows}
    found = []
    for unit_id in sorted(parents):
        mode = next(
            (own[u] for u in chain(unit_id, parents) if u is not None and own.get(u) is not None),
            AndroidMode.DEFAULT,
        )
        if mode == AndroidMode.AMAPI:
            found.append(unit_id)
    return found


def set_android_mode(session: Session, unit: OrgUnit, mode: str | None, *, actor: Actor) -> bool:
    """Set the unit's own mode ('agent' | 'amapi') or clear it (None: as the unit above says);
    audited with what applies afterwards. Returns whether it changed. Tablets already enrolled stay
    on the path they enrolled through: a mode names how new tablets of the unit enroll."""
    if mode is not None and mode not in AndroidMode.ALL:
        raise ModeError(f"android_mode: must be one of {', '.join(AndroidMode.ALL)} or null")
    before = unit.android_mode
    if before == mode:
        return False
    unit.android_mode = mode
    unit.updated_at = clock.now()
    session.flush()
    record_event(
        session,
        actor,
        "amapi.unit_mode_changed",
        "org_unit",
        unit.id,
        {"before": before, "after": mode, "effective": android_mode(session, unit.id)},
    )
    return True
