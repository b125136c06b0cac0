"""People behind service-level test actors: the two-person wipe rule compares user ids, so a test
that calls the hotline services directly acts as a real user row (made once per name)."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.models import User

_USER_ROLES = ("admin", "operator", "approver", "auditor")


def person(session: Session, actor: Actor) -> Actor:
    """`actor` with the id of the user of the same name (created when missing)."""
    username = actor.name.strip()[:64]
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        user = User(
            username=username,
            role=actor.role if actor.role in _USER_ROLES else "operator",
            password_hash="!",  # cannot log in: these people only act through the services
            must_change_password=False,
            created_by="test",
        )
        session.add(user)
        session.flush()
    return replace(actor, user_id=user.id)
