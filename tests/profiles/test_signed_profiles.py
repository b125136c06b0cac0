"""Rendered Apple profiles are signed like the enrollment profile: `openssl cms -verify` accepts
every template's profile against the built-in CA and gives back exactly the rendered plist."""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from mdm.ground.audit import Actor
from mdm.ground.ca import device_ca_certificate, ensure_ca
from mdm.ground.models import ProfileRendering
from mdm.ground.x509util import to_pem
from profiles.rendering import APPLE
from profiles.service import create_profile_from_template, render_profile, update_profile
from profiles.signing import server_render_context, signed_apple_profile
from profiles.templates import TEMPLATES
from tests.support.apple_schema import check_profile
from tests.support.tools import require_tool

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


@pytest.fixture
def ca_ready(session, settings):
    ensure_ca(session, settings)
    session.flush()
    return settings


def _verify(openssl: str, tmp_path: Path, signed: bytes, ca_pem: str) -> bytes:
    signed_file = tmp_path / "profile.mobileconfig"
    signed_file.write_bytes(signed)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca_pem)
    out = tmp_path / "content.plist"
    done = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            str(signed_file),
            "-CAfile",
            str(ca_file),
            "-out",
            str(out),
            "-binary",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Verification successful" in done.stderr
    return out.read_bytes()


@pytest.mark.parametrize("slug", sorted(TEMPLATES))
def test_every_template_profile_is_signed_and_verifies(session, ca_ready, tmp_path, slug):
    openssl = require_tool("openssl")
    profile = create_profile_from_template(session, ADMIN, slug, identifier=f"jp.example.fd.{slug}")
    signed = signed_apple_profile(session, ca_ready, profile)
    content = _verify(openssl, tmp_path, signed, to_pem(device_ca_certificate(session)))
    rendered = render_profile(profile, APPLE, server_render_context(session, ca_ready)).content
    assert content == rendered
    document = plistlib.loads(content)
    assert document["PayloadIdentifier"] == profile.identifier
    assert check_profile(document) == []


def test_signed_rendering_is_stored_once_per_version(session, ca_ready, tmp_path):
    openssl = require_tool("openssl")
    profile = create_profile_from_template(
        session, ADMIN, "field-standard", identifier="jp.example.fd.baseline"
    )
    first = signed_apple_profile(session, ca_ready, profile)
    assert signed_apple_profile(session, ca_ready, profile) == first
    spec = dict(profile.spec, name_en="Field tablet baseline (2026)")
    update_profile(session, ADMIN, profile, spec)
    second = signed_apple_profile(session, ca_ready, profile)
    assert second != first
    rows = session.scalars(select(ProfileRendering).order_by(ProfileRendering.version)).all()
    assert [(r.profile_id, r.version, r.platform) for r in rows] == [
        (profile.id, 1, APPLE),
        (profile.id, 2, APPLE),
    ]
    content = _verify(openssl, tmp_path, second, to_pem(device_ca_certificate(session)))
    assert plistlib.loads(content)["PayloadDisplayName"]
