"""Enrollment tokens per AMAPI unit: enrollmentTokens.create with the unit's policy and
`additionalData` naming the unit, so a tablet that scans the QR code lands in that unit.

The unit comes from the server, never from the request or the device: `additionalData` is written
here (JSON {"org_unit_id": N}), and `unit_of_enrollment` trusts a device's claim only when its
enrollment token is one of ours for that same unit. The token's value and QR payload (which
carries the value) are bearer secrets for enrolling into the unit: sealed, shown only on the
printable sheet, revoked by deleting the token at Google.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.amapi_client import AmapiClient, AmapiError
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import AmapiEnrollmentToken, AndroidMode, OrgUnit
from mdm.ground.secretbox import seal, unseal
from mdm.services.amapi.enterprise import EnterpriseError, bound_enterprise
from mdm.services.amapi.google_time import google_time
from mdm.services.amapi.mode import android_mode
from mdm.services.amapi.policies import sync_unit_policy

VALUE_PURPOSE = "amapi-enrollment-token"
QR_PURPOSE = "amapi-enrollment-qr"
# AMAPI's own bounds on a token's life: 1 hour (we ask at least a day) to 90 days (its maximum,
# 10,000 years for a never-expiring token is not offered: a printed sheet must go stale).
MIN_DAYS = 1
MAX_DAYS = 90
DEFAULT_DAYS = 30


def create_token(
    session: Session,
    settings: Settings,
    client: AmapiClient,
    unit: OrgUnit,
    *,
    actor: Actor,
    days: int = DEFAULT_DAYS,
) -> AmapiEnrollmentToken:
    """A new token for `unit` (in AMAPI mode), its policy patched first so it exists."""
    enterprise = bound_enterprise(session)
    if enterprise is None:
        raise EnterpriseError("enterprise", "no enterprise is bound yet")
    if android_mode(session, unit.id) != AndroidMode.AMAPI:
        raise EnterpriseError("org_unit_id", "the unit's Android tablets are not in AMAPI mode")
    if not isinstance(days, int) or isinstance(days, bool) or not MIN_DAYS <= days <= MAX_DAYS:
        raise EnterpriseError("days", f"must be {MIN_DAYS} to {MAX_DAYS}")
    policy, _patched = sync_unit_policy(session, settings, client, unit.id, actor=actor)
    body = {
        "policyName": policy.policy_name,
        "additionalData": json.dumps({"org_unit_id": unit.id}, separators=(",", ":")),
        "duration": f"{days * 86400}s",
        "allowPersonalUsage": "PERSONAL_USAGE_DISALLOWED",
        "oneTimeOnly": False,
    }
    answer = client.call("POST", f"{enterprise}/enrollmentTokens", body=body)
    name, value, qr = answer.get("name"), answer.get("value"), answer.get("qrCode")
    if not all(isinstance(v, str) and v for v in (name, value, qr)):
        raise EnterpriseError("enrollment_token", "Google's answer lacks the token's name, value or QR code")
    assert isinstance(name, str) and isinstance(value, str) and isinstance(qr, str)
    row = AmapiEnrollmentToken(
        org_unit_id=unit.id,
        token_name=name[:255],
        policy_name=policy.policy_name,
        value_sealed=seal(settings.secret_key, VALUE_PURPOSE, value.encode()),
        qr_code_sealed=seal(settings.secret_key, QR_PURPOSE, qr.encode()),
        expires_at=google_time(answer.get("expirationTimestamp")) or clock.now() + timedelta(days=days),
        created_at=clock.now(),
        created_by=actor.name,
    )
    session.add(row)
    session.flush()
    record_event(
        session,
        actor,
        "amapi.enrollment_token_created",
        "org_unit",
        unit.id,
        {
            "token_id": row.id,
            "token_name": row.token_name,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        },
    )
    return row


def unit_tokens(
    session: Session, org_unit_id: int, *, include_revoked: bool = False
) -> list[AmapiEnrollmentToken]:
    query = select(AmapiEnrollmentToken).where(AmapiEnrollmentToken.org_unit_id == org_unit_id)
    if not include_revoked:
        query = query.where(AmapiEnrollmentToken.revoked_at.is_(None))
    return list(session.scalars(query.order_by(AmapiEnrollmentToken.id.desc())))


def token_state(row: AmapiEnrollmentToken) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= clock.now():
        return "expired"
    return "active"


def revoke_token(session: Session, client: AmapiClient, row: AmapiEnrollmentToken, *, actor: Actor) -> bool:
    """Delete the token at Google (one already gone there counts as deleted); audited. Returns
    whether it was active."""
    if row.revoked_at is not None:
        return False
    try:
        client.call("DELETE", row.token_name)
    except AmapiError as exc:
        if not exc.not_found:
            raise
    row.revoked_at = clock.now()
    row.revoked_by = actor.name
    session.flush()
    record_event(
        session,
        actor,
        "amapi.enrollment_token_revoked",
        "org_unit",
        row.org_unit_id,
        {"token_id": row.id, "token_name": row.token_name},
    )
    return True


def qr_payload(settings: Settings, row: AmapiEnrollmentToken) -> str:
    """The QR code's text as Google made it (the provisioning extras, with the token's value)."""
    return unseal(settings.secret_key, QR_PURPOSE, row.qr_code_sealed).decode()


def unit_of_enrollment(session: Session, token_name: str | None, token_data: str | None) -> int | None:
    """The unit a newly enrolled AMAPI device belongs to: the unit of the enrollment token it
    used, when that token is ours, and its `additionalData` (echoed by the device as
    enrollmentTokenData) agrees; else None (the device is left without a unit for a person)."""
    if not token_name:
        return None
    row = session.scalars(
        select(AmapiEnrollmentToken).where(AmapiEnrollmentToken.token_name == token_name)
    ).first()
    if row is None:
        return None
    try:
        claimed = json.loads(token_data or "{}").get("org_unit_id")
    except (ValueError, AttributeError):
        return None
    return row.org_unit_id if claimed == row.org_unit_id else None
