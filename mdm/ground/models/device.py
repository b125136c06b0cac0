"""Devices, their identity certificates and the raw messages they sent."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, column, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from mdm.ground import clock
from mdm.ground.models.base import Base
from mdm.ground.redaction import strip_raw_message

if TYPE_CHECKING:
    from mdm.ground.models.org_unit import OrgUnit


class EnrollmentState:
    PENDING = "pending"  # Authenticate seen, no TokenUpdate yet
    ENROLLED = "enrolled"
    UNENROLLED = "unenrolled"  # CheckOut, or removed by an administrator
    RETIRED = "retired"  # wiped; comes back only by enrolling again

    ALL = (PENDING, ENROLLED, UNENROLLED, RETIRED)
    # States in which the UDID may bind a new identity without an administrator's say-so.
    REBINDABLE = (UNENROLLED, RETIRED)


class IdentityPurpose:
    """What an issued (or first-seen) device certificate may be used for; one door each."""

    MDM_IDENTITY = "mdm_identity"  # the Apple MDM channel (enrollment, renewal, external CA)
    WIFI = "wifi"  # EAP-TLS on the network only; never opens /mdm/*
    ANDROID_AGENT = "android_agent"  # the Android agent channel only

    ALL = (MDM_IDENTITY, WIFI, ANDROID_AGENT)


# At most one enrolled Android device per serial number: two agents racing to enroll with the
# same claimed serial cannot both win (mdm.services.android_channel.enrollment refuses the loser with 409).
_ANDROID_ENROLLED = text(
    "platform = 'android' AND enrollment_state = 'enrolled' AND serial_number IS NOT NULL"
)


# Columns the hotline and the device list search (commands.incidents.views, web.queries).
SEARCH_EXACT = ("asset_tag", "serial_number", "assigned_user", "udid")
SEARCH_SUBSTRING = (
    "udid",
    "serial_number",
    "device_name",
    "model_name",
    "product_name",
    "asset_tag",
    "assigned_user",
)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (
        Index(
            "uq_devices_android_enrolled_serial",
            "serial_number",
            unique=True,
            sqlite_where=_ANDROID_ENROLLED,
            postgresql_where=_ANDROID_ENROLLED,
        ),
        # The device list's default order, most recently seen first (migration 0014; SQLite puts
        # NULL last in a descending index without being told).
        Index("ix_devices_last_seen_order", column("last_seen_at").desc().nullslast(), "id"),
        # The hotline's search (migration 0014): exact matches on lower(), and on PostgreSQL with
        # pg_trgm a trigram index per searched column for `lower(col) LIKE '%…%'`.
        *(Index(f"ix_devices_lower_{c}", func.lower(column(c))) for c in SEARCH_EXACT),
        *(
            Index(
                f"ix_devices_trgm_{c}",
                text(f"lower({c}) gin_trgm_ops"),
                postgresql_using="gin",
            )
            for c in SEARCH_SUBSTRING
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), default="apple")
    udid: Mapped[str | None] = mapped_column(String(128), unique=True)
    serial_number: Mapped[str | None] = mapped_column(String(64), index=True)
    device_name: Mapped[str | None] = mapped_column(String(255))
    model: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(128))
    product_name: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(32))
    build_version: Mapped[str | None] = mapped_column(String(32))
    # From Authenticate (and later DeviceInformation answers): cellular identifiers.
    imei: Mapped[str | None] = mapped_column(String(32))
    meid: Mapped[str | None] = mapped_column(String(32))
    # None until the device reports IsSupervised (DeviceInformation): unknown is not "no". The
    # column is "supervised" since migration 0007 (a new nullable column: SQLite cannot make the
    # old NOT NULL one nullable without rebuilding the devices table, which cascades deletes).
    is_supervised: Mapped[bool | None] = mapped_column("supervised", default=None)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    # HQ's asset sticker (資産番号) and the crew or person the tablet is issued to: what a caller
    # on the hotline reads off the back or says first. Unique asset tag; NULLs never collide.
    asset_tag: Mapped[str | None] = mapped_column(String(64), unique=True)
    assigned_user: Mapped[str | None] = mapped_column(String(128))

    push_token: Mapped[str | None] = mapped_column(String(512))  # hex of the device token
    push_magic: Mapped[str | None] = mapped_column(String(128))
    topic: Mapped[str | None] = mapped_column(String(255))
    # UnlockToken is a credential that clears the passcode: kept encrypted (mdm.ground.secretbox).
    unlock_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)

    enrollment_state: Mapped[str] = mapped_column(String(16), default=EnrollmentState.PENDING, index=True)
    enrolled_at: Mapped[datetime | None]
    unenrolled_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    push_error: Mapped[str | None] = mapped_column(String(64))
    push_error_at: Mapped[datetime | None]
    token_stale_at: Mapped[datetime | None]

    # An administrator lets this UDID bind a new identity while enrolled (a tablet restored
    # from backup, a profile removed without CheckOut) until then; the binding uses it up.
    reenroll_allowed_until: Mapped[datetime | None]
    reenroll_allowed_by: Mapped[str | None] = mapped_column(String(255))
    # Android agent: the policy version last built for the device, and what it was built from (the
    # policy generation and the device's own fields: mdm.services.android_channel.policy_basis).
    agent_policy_version: Mapped[str | None] = mapped_column(String(64))
    agent_policy_basis: Mapped[str | None] = mapped_column(String(96))
    agent_reports_location: Mapped[bool | None]  # that policy's reporting.location

    certificates: Mapped[list[DeviceCertificate]] = relationship(
        back_populates="device", foreign_keys="DeviceCertificate.device_id"
    )
    org_unit: Mapped[OrgUnit | None] = relationship()

    def __repr__(self) -> str:
        return f"<Device {self.id} {self.udid or self.serial_number}>"


class DeviceCertificate(Base):
    """An identity certificate a device authenticates with; bound to at most one device."""

    __tablename__ = "device_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    subject: Mapped[str] = mapped_column(String(512))
    issuer: Mapped[str] = mapped_column(String(512))
    serial_hex: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime] = mapped_column(index=True)
    pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    bound_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # IdentityPurpose: fixed at issuance (or when an external-CA identity is first seen).
    purpose: Mapped[str] = mapped_column(String(16))
    # Set when the certificate was issued over SCEP through an enrollment token.
    enrollment_token_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment_tokens.id"), index=True)
    # A Wi-Fi certificate is never bound (device_id stays NULL) but has a holder, so a lost or
    # wiped tablet's Wi-Fi access can be revoked; key_alias: the Android key pair it was for.
    holder_device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    key_alias: Mapped[str | None] = mapped_column(String(64))

    device: Mapped[Device | None] = relationship(back_populates="certificates", foreign_keys=[device_id])


class DeviceMessage(Base):
    """A check-in message as the device sent it, secrets (UnlockToken...) replaced by "[redacted]"."""

    __tablename__ = "device_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    message_type: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)

    @validates("raw")
    def _without_secrets(self, _key: str, raw: bytes) -> bytes:
        return self.stored_raw(raw)

    @staticmethod
    def stored_raw(raw: bytes) -> bytes:
        """What is kept of a message: every way a message is stored goes through this, the one
        place secrets are kept out of it (an INSERT statement calls it, the ORM's validator too)."""
        return strip_raw_message(raw)
