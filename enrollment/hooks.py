"""When a device authenticates with an identity issued through a token, it joins the token's unit.

The wiring (mdm.roots.wiring) connects `place_in_token_unit` to mdm.services.devices' IDENTITY_BOUND.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Device, DeviceCertificate, EnrollmentToken, EnrollmentTokenUse, OrgUnit
from mdm.services import orgunits


def place_in_token_unit(session: Session, device: Device, row: DeviceCertificate, actor: Actor) -> None:
    if row.enrollment_token_id is None:
        return
    token = session.get(EnrollmentToken, row.enrollment_token_id)
    if token is None:
        return
    use = session.scalars(
        select(EnrollmentTokenUse).where(EnrollmentTokenUse.device_certificate_id == row.id)
    ).first()
    if use is not None and use.device_id is None:
        use.device_id = device.id
        use.bound_at = clock.now()
    if token.platform and device.platform != token.platform:
        return
    join_token_unit(session, device, token, row.fingerprint_sha256, actor=actor)


def join_token_unit(
    session: Session, device: Device, token: EnrollmentToken, certificate_fingerprint: str, *, actor: Actor
) -> None:
    """Put a device enrolled with `token` into the token's unit (its profiles follow the move)."""
    unit = session.get(OrgUnit, token.org_unit_id)
    orgunits.assign_device(session, device, unit, actor=actor)
    record_event(
        session,
        actor,
        "device.enrolled_with_token",
        "device",
        device.id,
        {
            "enrollment_token_id": token.id,
            "org_unit_id": token.org_unit_id,
            "certificate": certificate_fingerprint,
        },
    )
