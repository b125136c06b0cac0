"""The facts row of a device, created on first use."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm.ground.models import DeviceFacts

# session.info key: facts rows used in this transaction, kept referenced. The session's identity
# map holds objects weakly: without this, an unchanged facts row is collected between two results
# of the same device and loaded again by the next one.
_IN_USE = "hikeshi.facts_in_use"


def facts_for(session: Session, device_id: int) -> DeviceFacts:
    in_use: dict[int, DeviceFacts] = session.info.setdefault(_IN_USE, {})
    facts = in_use.get(device_id)
    if facts is not None and facts in session:
        return facts
    facts = session.get(DeviceFacts, device_id)
    if facts is None:
        facts = DeviceFacts(device_id=device_id, raw_device_information={}, raw_security_info={})
        session.add(facts)
    in_use[device_id] = facts
    return facts


def keep_facts(session: Session, facts: DeviceFacts) -> None:
    """A facts row read with something else (the device's identity read): `facts_for` uses it."""
    session.info.setdefault(_IN_USE, {})[facts.device_id] = facts


def forget_facts_in_use(session: Session) -> None:
    """At the end of a transaction: what another transaction wrote must be read afresh."""
    session.info.pop(_IN_USE, None)


def device_facts(session: Session, device_id: int) -> DeviceFacts | None:
    """What the console shows on a device's page; None before the first inventory."""
    return session.get(DeviceFacts, device_id)
