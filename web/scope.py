"""Org-unit scope: the set of units a scoped user or token may see (its unit and every unit below)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm.services.orgunits import subtree_ids


def scope_of(session: Session, org_unit_id: int | None) -> frozenset[int] | None:
    if org_unit_id is None:
        return None
    return frozenset(subtree_ids(session, org_unit_id))
