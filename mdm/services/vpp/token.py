"""The Apps and Books location token (`.vpptoken`): its upload, sealing and expiry.

A content manager downloads one token per location in Apple Business Manager (Preferences →
Payments and Billing → Content Tokens). The file is base64 of a JSON object with `token`,
`expDate` and `orgName`; the file's text itself is the bearer value the service expects
(`Authorization: Bearer <sToken>`). It is stored sealed; only the organisation, the expiry and
the location (learnt from the service) stay in clear. It lasts a year and is renewed in ABM:
a renewal of the same location keeps the assets and licenses, another location is warned of.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import VppToken
from mdm.ground.secretbox import SecretBoxError, seal, unseal
from mdm.ground.token_expiry import TokenNames, TokenWarning
from mdm.ground.token_expiry import expiry_warning as token_expiry_warning

PURPOSE = "vpp-location-token"
MAX_TOKEN_BYTES = 16 * 1024


class VppTokenFileError(ValueError):
    """The upload is not a usable location token; the message says which field and why."""


@dataclass(frozen=True)
class TokenFile:
    bearer: str
    org_name: str
    expires_at: datetime


def _expiry(raw: object) -> datetime:
    if not isinstance(raw, str) or not raw:
        raise VppTokenFileError("token: expDate is missing")
    text = raw.strip()
    # Apple writes the offset without a colon (2027-11-08T14:33:22-0800).
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(text.replace("Z", "+0000"), fmt)
        except ValueError:
            continue
    raise VppTokenFileError("token: expDate is not a date with a time zone")


def read_token_file(data: bytes) -> TokenFile:
    if not data or len(data) > MAX_TOKEN_BYTES:
        raise VppTokenFileError(f"token: empty or larger than {MAX_TOKEN_BYTES} bytes")
    try:
        bearer = data.decode("ascii").strip()
        fields = json.loads(base64.b64decode("".join(bearer.split()), validate=True))
    except (UnicodeDecodeError, binascii.Error, ValueError) as exc:
        raise VppTokenFileError("token: not a location token (.vpptoken: base64 of JSON)") from exc
    if not isinstance(fields, dict):
        raise VppTokenFileError("token: not a location token (the JSON is not an object)")
    if not isinstance(fields.get("token"), str) or not fields["token"]:
        raise VppTokenFileError("token: the token field is missing")
    org = fields.get("orgName")
    if not isinstance(org, str) or not org.strip():
        raise VppTokenFileError("token: orgName is missing")
    return TokenFile("".join(bearer.split()), org.strip()[:255], _expiry(fields.get("expDate")))


def active_token(session: Session) -> VppToken | None:
    return session.scalars(
        select(VppToken).where(VppToken.active.is_(True)).order_by(VppToken.id.desc()).limit(1)
    ).first()


def store_token(session: Session, settings: Settings, data: bytes, *, actor: Actor) -> VppToken:
    """Store an uploaded token in place of the active one. The location stays as the replaced
    token's until the next sync asks the service (which then warns if it differs)."""
    parsed = read_token_file(data)
    if parsed.expires_at <= clock.now():
        raise VppTokenFileError(
            f"token: expired on {parsed.expires_at:%Y-%m-%d}: download a new one in Apple Business Manager"
        )
    current = active_token(session)
    row = VppToken(
        token_sealed=seal(settings.secret_key, PURPOSE, parsed.bearer.encode()),
        org_name=parsed.org_name,
        expires_at=parsed.expires_at,
        location_name=current.location_name if current else None,
        location_uid=current.location_uid if current else None,
        country_code=current.country_code if current else None,
        active=True,
        uploaded_at=clock.now(),
        uploaded_by=actor.name,
    )
    if current is not None:
        current.active = False
    session.add(row)
    session.flush()
    record_event(
        session,
        actor,
        "vpp.token_uploaded",
        "vpp_token",
        row.id,
        {
            "org_name": row.org_name,
            "expires_at": row.expires_at.isoformat(),
            "replaced": current.id if current else None,
            "same_organisation": current is None or current.org_name == row.org_name,
        },
    )
    return row


def bearer_of(row: VppToken, settings: Settings) -> str:
    try:
        return unseal(settings.secret_key, PURPOSE, row.token_sealed).decode()
    except SecretBoxError as exc:
        raise VppTokenFileError(str(exc)) from exc


NAMES = TokenNames(
    "App とブックのコンテンツトークン", "The Apps and Books content token", "Apple Business Manager"
)


def expiry_warning(row: VppToken | None) -> TokenWarning | None:
    """What operators must be told: expired, expiring within 30 days, or a changed location."""
    if row is None:
        return None
    warning = token_expiry_warning(row.expires_at, NAMES)
    if warning is not None:
        return warning
    if row.replaced_location:
        return TokenWarning(
            "warn",
            f"新しいコンテンツトークンの場所（{row.location_name}）は前の場所（{row.replaced_location}）と"
            "異なります。前の場所のライセンスはこのサーバーから管理できません。",
            f"The new content token is for another location ({row.location_name}, was "
            f"{row.replaced_location}): licenses of the old location are no longer managed here.",
        )
    return None
