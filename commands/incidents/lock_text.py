"""The text a lost tablet of a station shows: a lock-screen message and a callback number set on
the org unit and read down the tree (隊 → 署 → 本部), each on its own; what no unit sets falls back
to the built-in message and no number.

The hotline's lock form is prefilled with it and lock now (DeviceLock or EnableLostMode) sends it
when the operator leaves the text as it is. The text is checked by commands.lock_screen only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError
from sqlalchemy.orm import Session

from commands.incidents.errors import IncidentInputError
from commands.lock_screen import UnitLockTextSchema
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import OrgUnit
from mdm.services.orgunits import ancestors

DEFAULT_LOCK_MESSAGE = "この端末は紛失・盗難の届出が出ています。拾得された方は消防署へお届けください。"


@dataclass(frozen=True)
class LockText:
    message: str
    phone_number: str | None
    # The unit each value comes from; None: the built-in message / no number.
    message_unit: OrgUnit | None
    phone_unit: OrgUnit | None


def lock_text_for(session: Session, unit: OrgUnit | None, *, chain: list[OrgUnit] | None = None) -> LockText:
    """The message and number a tablet of `unit` shows when locked, nearest unit first. `chain`:
    the unit and those above it, nearest first, when the caller read them already
    (orgunits.unit_chains for a list of hits)."""
    if chain is None:
        chain = [] if unit is None else [unit, *reversed(ancestors(session, unit))]
    message_unit = next((u for u in chain if u.lock_message), None)
    phone_unit = next((u for u in chain if u.lock_phone), None)
    return LockText(
        message=message_unit.lock_message
        if message_unit and message_unit.lock_message
        else DEFAULT_LOCK_MESSAGE,
        phone_number=phone_unit.lock_phone if phone_unit else None,
        message_unit=message_unit,
        phone_unit=phone_unit,
    )


def set_unit_lock_text(
    session: Session, unit: OrgUnit, data: Mapping[str, Any], *, actor: Actor
) -> dict[str, dict[str, Any]]:
    """Set the unit's own message and number (blank: inherit); audited. Returns what changed."""
    try:
        clean = UnitLockTextSchema().load(dict(data))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"message": exc.messages}
        raise IncidentInputError(messages) from exc
    changes: dict[str, dict[str, Any]] = {}
    for field, column in (("message", "lock_message"), ("phone_number", "lock_phone")):
        before = getattr(unit, column)
        if before != clean[field]:
            changes[field] = {"from": before, "to": clean[field]}
            setattr(unit, column, clean[field])
    if changes:
        unit.updated_at = clock.now()
        session.flush()
        record_event(session, actor, "org_unit.lock_text_changed", "org_unit", unit.id, {"changes": changes})
    return changes
