"""Settings a unit inherits down the tree: its own value wins, None takes the nearest ancestor's,
up to the HQ, then the default (a fleet-wide row, or a built-in value).

Shared by the settings stored per unit (compliance and OS update policies, Activation Lock,
Android location reporting) so they all resolve and record a change the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Base, OrgUnit

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Policy = TypeVar("Policy", bound="DataclassInstance")
Row = TypeVar("Row", bound=Base)


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


def own_row(session: Session, model: type[Row], org_unit_id: int | None) -> Row | None:
    """The unit's own stored row of a per-unit policy table (None: the default row), or None when
    it has none."""
    column = model.org_unit_id  # type: ignore[attr-defined]
    where = column.is_(None) if org_unit_id is None else column == org_unit_id
    return session.scalars(select(model).where(where)).first()


def set_own_values(
    session: Session, model: type[Row], org_unit_id: int | None, values: dict[str, Any]
) -> Row:
    """Write `values` into the unit's own row (created when it has none; None: the default row).
    A value of None inherits. The caller has checked the values and records the event."""
    row = own_row(session, model, org_unit_id)
    if row is None:
        row = model(org_unit_id=org_unit_id)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = clock.now()  # type: ignore[attr-defined]
    return row


class InheritedBook(Generic[Policy]):
    """Every stored row of one per-unit policy (one row per unit, the default row's unit None) and
    the unit tree, loaded once, for resolving many units: a unit gets, per field, its nearest
    value, else `base`'s."""

    def __init__(
        self,
        session: Session,
        rows: Iterable[Any],
        base: Policy,
        fields: Iterable[str],
        convert: Callable[[str, Any], Any] = lambda _name, value: value,
    ) -> None:
        self.base = base
        self.rows: dict[int | None, Any] = {row.org_unit_id: row for row in rows}
        self.parents: dict[int, int | None] = dict(
            session.execute(select(OrgUnit.id, OrgUnit.parent_id)).all()
        )
        self._fields = tuple(fields)
        self._convert = convert
        self._cache: dict[int | None, Policy] = {}

    def for_unit(self, org_unit_id: int | None) -> Policy:
        if org_unit_id not in self._cache:
            rows = (self.rows.get(unit) for unit in chain(org_unit_id, self.parents))
            values = nearest_values(rows, self._fields, self._convert)
            self._cache[org_unit_id] = replace(self.base, **values)
        return self._cache[org_unit_id]


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
    details = {"before": before, "after": value, "effective": effective(session, unit.id)}
    record_event(session, actor, event, "org_unit", unit.id, details)
    return True
