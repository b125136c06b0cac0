"""Android Management API (AMAPI) mode: the one Google enterprise this server manages, the policy
it keeps there per org unit, the enrollment tokens it made per unit, and the AMAPI device behind
each Android device enrolled that way.

The service-account key, enrollment token values and their QR payloads are bearer secrets:
stored only sealed (mdm.ground.secretbox). Names Google gives (`enterprises/LC…`,
`enterprises/LC…/policies/…`) are kept as Google spells them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class AndroidMode:
    """How a unit's Android tablets are managed: Hikeshi's own agent (closed networks) or Google's
    Android Device Policy through AMAPI (tablets with Google Mobile Services and internet)."""

    AGENT = "agent"
    AMAPI = "amapi"

    ALL = (AGENT, AMAPI)
    DEFAULT = AGENT
    LABELS = {
        AGENT: ("Hikeshi エージェント（閉域網）", "Hikeshi agent (closed network)"),
        AMAPI: ("Android Management API（Google）", "Android Management API (Google)"),
    }


class AmapiEnterprise(Base):
    """The single enterprise binding (at most one row): its service account and where it stands in
    the signup → enterprise → notifications sequence."""

    __tablename__ = "amapi_enterprise"

    id: Mapped[int] = mapped_column(primary_key=True)
    # `enterprises/LC…` once enterprises.create answered; None while the signup is under way.
    enterprise_name: Mapped[str | None] = mapped_column(String(128), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    # The Google Cloud project of the service account (and of the Pub/Sub topic).
    project_id: Mapped[str | None] = mapped_column(String(128))
    # The service account's JSON key file, sealed; never read back to a page or an answer.
    service_account_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Shown so an administrator can tell which key is in use (not secrets: identifiers).
    service_account_email: Mapped[str | None] = mapped_column(String(255))
    service_account_key_id: Mapped[str | None] = mapped_column(String(64))
    # signupUrls.create's answer: the name enterprises.create needs and the URL the admin opens.
    signup_url_name: Mapped[str | None] = mapped_column(String(255))
    signup_url: Mapped[str | None] = mapped_column(String(2048))
    signup_started_at: Mapped[datetime | None]
    # projects/{p}/topics/{t} the enterprise publishes notifications to, and the pull
    # subscription Hikeshi reads (projects/{p}/subscriptions/{s}).
    pubsub_topic: Mapped[str | None] = mapped_column(String(255))
    pubsub_subscription: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_by: Mapped[str | None] = mapped_column(String(255))


class AmapiPolicy(Base):
    """The AMAPI Policy of one org unit's tablets, as last patched."""

    __tablename__ = "amapi_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), unique=True)
    # enterprises/LC…/policies/unit-<id>
    policy_name: Mapped[str] = mapped_column(String(255), unique=True)
    # SHA-256 of the canonical JSON last patched: an unchanged policy is not patched again.
    content_sha256: Mapped[str] = mapped_column(String(64))
    # The version AMAPI answered (it increments at each patch); devices report the one applied.
    version: Mapped[int | None]
    patched_at: Mapped[datetime] = mapped_column(default=clock.now)
    # Why the last attempt failed (None once one succeeds): shown on the unit's page.
    last_error: Mapped[str | None] = mapped_column(String(512))
    last_error_at: Mapped[datetime | None]
    # The unit's EAP-TLS Wi-Fi identity carried in the policy's ONC Certificates (PKCS#12 from
    # the built-in CA, key made here), sealed; reused until it nears its expiry so that an
    # unchanged unit keeps an unchanged policy (docs/amapi.md, "Wi-Fi certificates").
    wifi_identity_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    wifi_identity_expires_at: Mapped[datetime | None]


class AmapiEnrollmentToken(Base):
    """An enrollment token made for one org unit: its QR code enrolls a tablet into that unit."""

    __tablename__ = "amapi_enrollment_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    # enterprises/LC…/enrollmentTokens/…
    token_name: Mapped[str] = mapped_column(String(255), unique=True)
    policy_name: Mapped[str] = mapped_column(String(255))
    # The token's value and the QR code's JSON payload (which carries the value): sealed.
    value_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    qr_code_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    created_by: Mapped[str] = mapped_column(String(255))
    # Revoked (deleted at Google) tokens stay listed as revoked; the value is then useless.
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(255))


class AmapiDevice(Base):
    """The AMAPI Device behind one enrolled Android device (`enterprises/LC…/devices/…`)."""

    __tablename__ = "amapi_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), unique=True)
    amapi_name: Mapped[str] = mapped_column(String(255), unique=True)
    enterprise_name: Mapped[str] = mapped_column(String(128), index=True)
    policy_name: Mapped[str | None] = mapped_column(String(255))
    applied_policy_version: Mapped[int | None]
    last_status_report_at: Mapped[datetime | None]
    # The last Device resource received, trimmed to a bounded size (mdm/services/amapi).
    last_report: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
