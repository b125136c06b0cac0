"""Signed Apple renderings of profiles: rendered from the stored spec, signed like the enrollment
profile (mdm.ground.signing with the built-in CA's profile signer), stored once per version.

Device hooks (enrollment, ProfileList results) have no instance secret to unseal the signer key,
so every device gets the bytes stored here; a rendering is made wherever settings are at hand
(assignment, a new version, export).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from enrollment.profile import SCEP_PATH
from mdm.ground import clock
from mdm.ground.ca import device_ca_certificate, profile_signer, sha1_fingerprint
from mdm.ground.config import Settings
from mdm.ground.models import Profile, ProfileRendering
from mdm.ground.signing import sign_profile
from mdm.ground.x509util import to_pem
from profiles.rendering import APPLE, RenderContext
from profiles.service import render_profile


def server_render_context(session: Session, settings: Settings) -> RenderContext:
    """The pieces of this server a rendering needs: its SCEP URL and the built-in CA.

    No SCEP challenge is put in a rendering shared by every device (it would be readable by all);
    the built-in SCEP endpoint decides how it authenticates Wi-Fi identity requests."""
    ca = device_ca_certificate(session)
    return RenderContext(
        scep_url=settings.public_url.rstrip("/") + SCEP_PATH,
        scep_ca_fingerprint=sha1_fingerprint(ca),
        ca_certificate_pem=to_pem(ca),
        organization=settings.organization_name,
    )


def sign_apple_profile(session: Session, settings: Settings, plist: bytes) -> bytes:
    """DER CMS SignedData of `plist` by the profile signer, carrying the CA certificate."""
    return sign_profile(plist, profile_signer(session, settings), [device_ca_certificate(session)])


def stored_apple_profile(session: Session, profile_id: int, version: int) -> ProfileRendering | None:
    return session.scalars(
        select(ProfileRendering).where(
            ProfileRendering.profile_id == profile_id,
            ProfileRendering.version == version,
            ProfileRendering.platform == APPLE,
        )
    ).first()


def signed_apple_profile(session: Session, settings: Settings, profile: Profile) -> bytes:
    """The signed .mobileconfig of the profile's current version, rendered and stored on first use."""
    return signed_apple_rendering(session, settings, profile).content


def signed_apple_rendering(session: Session, settings: Settings, profile: Profile) -> ProfileRendering:
    """The stored signed rendering of the profile's current version, made on first use."""
    stored = stored_apple_profile(session, profile.id, profile.version)
    if stored is not None:
        return stored
    plist = render_profile(profile, APPLE, server_render_context(session, settings)).content
    signed = sign_apple_profile(session, settings, plist)
    row = ProfileRendering(
        profile_id=profile.id,
        version=profile.version,
        platform=APPLE,
        content=signed,
        sha256=hashlib.sha256(signed).hexdigest(),
        created_at=clock.now(),
    )
    try:
        # A savepoint: a concurrent signer of the same version wins, and its bytes are used.
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        stored = stored_apple_profile(session, profile.id, profile.version)
        if stored is None:
            raise
        return stored
    return row
