"""Enrollment: the built-in CA's key material, enrollment tokens, SCEP challenges, token uses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mdm.ground import clock
from mdm.ground.models.base import Base
from mdm.ground.models.org_unit import OrgUnit


class CertificatePurpose:
    DEVICE_CA = "device-ca"  # issues device identities over SCEP
    PROFILE_SIGNING = "profile-signing"  # signs enrollment and renewal profiles; issued by the CA

    ALL = (DEVICE_CA, PROFILE_SIGNING)


class CertificateAuthority(Base):
    """A certificate and its key (sealed with mdm.ground.secretbox) for one purpose.

    (purpose, generation) is unique, so several workers starting at once can all try to create
    generation 1 and exactly one succeeds. The newest generation of a purpose is the active one.
    """

    __tablename__ = "certificate_authorities"
    __table_args__ = (
        UniqueConstraint("purpose", "generation", name="uq_certificate_authorities_purpose_generation"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    generation: Mapped[int] = mapped_column(default=1)
    subject: Mapped[str] = mapped_column(String(512))
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    cert_pem: Mapped[str] = mapped_column(Text)
    key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class TokenPlatform:
    APPLE = "apple"
    ANDROID = "android"

    ALL = (APPLE, ANDROID)


class EnrollmentToken(Base):
    """A limited-use secret carried by a QR code; only the SHA-256 of the secret is stored."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    platform: Mapped[str] = mapped_column(String(16), default=TokenPlatform.APPLE)
    max_uses: Mapped[int] = mapped_column(default=1)
    # Counted when a device identity is issued through the token (see enrollment.tokens).
    use_count: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    created_by: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    revoke_reason: Mapped[str | None] = mapped_column(String(255))

    org_unit: Mapped[OrgUnit] = relationship()
    uses: Mapped[list[EnrollmentTokenUse]] = relationship(
        back_populates="token", order_by="EnrollmentTokenUse.id"
    )


class ChallengePurpose:
    ENROLL = "enroll"  # issued with an enrollment profile; tied to a token
    RENEW = "renew"  # issued with an identity-renewal profile; tied to a device
    # issued inside a Wi-Fi profile for the device's EAP-TLS certificate; tied to a device, but
    # the certificate it yields is for the network, never an MDM identity
    WIFI = "wifi"
    # issued with the enrollment profile an ADE device fetched with Apple-signed machine info;
    # tied to that enrollment (mdm.ground.models.ade.AdeEnrollment), not to a token
    ADE = "ade"

    ALL = (ENROLL, RENEW, WIFI, ADE)


class EnrollmentChallenge(Base):
    """A single-use SCEP challenge password, stored hashed."""

    __tablename__ = "enrollment_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    challenge_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment_tokens.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    # The InstallProfile command that carries a renewal challenge to its device.
    command_id: Mapped[int | None] = mapped_column(ForeignKey("commands.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    source_ip: Mapped[str | None] = mapped_column(String(64))


class EnrollmentTokenUse(Base):
    """One device identity issued through a token; `device_id` is filled when it authenticates."""

    __tablename__ = "enrollment_token_uses"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("enrollment_tokens.id"), index=True)
    challenge_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment_challenges.id"))
    device_certificate_id: Mapped[int] = mapped_column(ForeignKey("device_certificates.id"), unique=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    used_at: Mapped[datetime] = mapped_column(default=clock.now)
    bound_at: Mapped[datetime | None]
    source_ip: Mapped[str | None] = mapped_column(String(64))

    token: Mapped[EnrollmentToken] = relationship(back_populates="uses")


class AndroidProvisioning(Base):
    """What the Android device-owner QR code installs, set in the console (one row, id 1).

    A column left NULL falls back to the server's Android setting from the environment, so an installation
    configured by environment keeps working; a value stored here wins without a restart. The
    Wi-Fi password is sealed (mdm.ground.secretbox) like every other stored secret.
    """

    __tablename__ = "android_provisioning"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_package: Mapped[str | None] = mapped_column(String(255))
    agent_component: Mapped[str | None] = mapped_column(String(255))
    agent_download_url: Mapped[str | None] = mapped_column(String(1024))
    agent_signature_checksum: Mapped[str | None] = mapped_column(String(64))
    wifi_ssid: Mapped[str | None] = mapped_column(String(64))
    wifi_security: Mapped[str | None] = mapped_column(String(8))
    wifi_password_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    locale: Mapped[str | None] = mapped_column(String(16))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_by: Mapped[str] = mapped_column(String(255), default="")
