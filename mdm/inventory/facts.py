"""The facts row of a device, created on first use."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm.models import DeviceFacts


def facts_for(session: Session, device_id: int) -> DeviceFacts:
    facts = session.get(DeviceFacts, device_id)
    if facts is None:
        facts = DeviceFacts(device_id=device_id, raw_device_information={}, raw_security_info={})
        session.add(facts)
    return facts


def device_facts(session: Session, device_id: int) -> DeviceFacts | None:
    """What the console shows on a device's page; None before the first inventory."""
    return session.get(DeviceFacts, device_id)
