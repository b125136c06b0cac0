"""Settings a unit inherits down the tree: its own value wins, None takes the nearest ancestor's,
up to the HQ, then the default (a fleet-wide row, or a built-in value).

Shared by the settings stored per unit (compliance and OS update policies, Activation Lock,
Android location reporting) so they all resolve and record a change the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import OrgUnit


def chain(org_unit_id: int | None, parents: dict[int, int | None]) -> list[int | None]:
    """The unit, its ancestors up to the HQ, then None (the default row). A loop in the tree
    (never written, but a bad import could) ends the walk instead of spinning."""
    units: list[int | None] = []
    current = org_unit_id
    while current is not None and current not in units:
        units.append(current)
        current = parents.get(current)
    units.append(None)
    return units


def nearest_values(
    rows: Iterable[object | None],
    fields: Iterable[str],
    convert: Callable[[str, Any], Any] = lambda _name, value: value,
) -> dict[str, Any]:
    """Per field, the first value that is not None among `rows` (nearest first; a missing row is
    None), passed through `convert`. Fields set nowhere are left out, so the caller's defaults
    apply."""
    names = tuple(fields)
    values: dict[str, Any] = {}
    for row in rows:
        if row is None:
            continue
        for name in names:
            if name not in values and getattr(row, name) is not None:
                values[name] = convert(name, getattr(row, name))
    return values


def set_unit_flag(
    session: Session,
    unit: OrgUnit,
    column: str,
    value: bool | None,
    *,
    actor: Actor,
    event: str,
    effective: Callable[[Session, int], bool],
    argument: str = "value",
) -> bool:
    """Set (True/False) or clear (None: inherit) the unit's own `column`; audited as `event`
    with what applies afterwards. Returns whether it changed."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{argument} must be True, False or None")
    before = getattr(unit, column)
    if before is value:
        return False
    setattr(unit, column, value)
    unit.updated_at = clock.now()
    session.flush()
    record_event(
        session,
        actor,
        event,
        "org_unit",
        unit.id,
        {"before": before, "after": value, "effective": effective(session, unit.id)},
    )
    return True
