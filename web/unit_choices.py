"""The org units a filter's drop-down offers, bounded whatever the size of the tree.

A prefecture has 14,000 units: listing them all in every device list took 0.8 s and made a
drop-down no one can scroll. Up to LIMIT visible units the whole tree is offered, as before;
above it, the stations, branches and HQs (a few hundred at most) plus the units whose code or
name contains what the user typed in the text field next to it, at most LIMIT of them. The text
field works without JavaScript: it is sent with the filter form and the next page lists the matches.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from mdm.ground.models import OrgUnit, OrgUnitKind
from mdm.services.device_search import like_pattern
from mdm.services.orgunits import list_units
from web.rbac import Principal

LIMIT = 200
KIND_ORDER = case({kind: n for n, kind in enumerate(OrgUnitKind.ALL)}, value=OrgUnit.kind, else_=99)


@dataclass(frozen=True)
class UnitChoices:
    units: list[OrgUnit]
    # True: more units than the drop-down lists; the text field narrows it.
    searchable: bool
    text: str = ""
    # Units of kind 隊 matching `text` beyond those listed (the user should type more).
    more: bool = False


def unit_choices(
    session: Session,
    principal: Principal,
    text: str = "",
    selected: int | None = None,
    *,
    limit: int | None = None,
) -> UnitChoices:
    """What a unit drop-down offers `principal`: every visible unit in tree order while there are
    at most `limit`, else the bounded choice described above (`selected` always among them)."""
    limit = LIMIT if limit is None else limit
    text = text.strip()
    scope = principal.scope_unit_ids
    visible = len(scope) if scope is not None else int(session.scalar(select(func.count(OrgUnit.id))) or 0)
    if visible <= limit:
        return UnitChoices([u for u in list_units(session) if principal.sees_unit(u.id)], False, text)
    wanted = [OrgUnit.kind != OrgUnitKind.UNIT]
    first = []
    if text:
        pattern = like_pattern(text)
        names = (OrgUnit.code, OrgUnit.name_ja, OrgUnit.name_en)
        matches = or_(*(func.lower(c).like(pattern, escape="\\") for c in names))
        wanted.append(matches)
        first.append(case((matches, 0), else_=1))  # what was typed for comes before the stations
    if selected is not None:
        wanted.append(OrgUnit.id == selected)
    stmt = select(OrgUnit).where(or_(*wanted))
    if scope is not None:
        stmt = stmt.where(OrgUnit.id.in_(sorted(scope)))
    stmt = stmt.order_by(*first, KIND_ORDER, OrgUnit.code.nulls_last(), OrgUnit.name_ja, OrgUnit.id).limit(
        limit + 1
    )
    found = list(session.scalars(stmt))
    return UnitChoices(found[:limit], True, text, more=len(found) > limit)
