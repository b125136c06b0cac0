"""Reading served enrollment profiles in tests (independently of the server's code)."""

from __future__ import annotations

import plistlib
from typing import Any

from asn1crypto import cms


def signed_content(der: bytes) -> bytes:
    """The plist bytes encapsulated in a CMS SignedData profile."""
    info = cms.ContentInfo.load(der)
    assert info["content_type"].native == "signed_data"
    return info["content"]["encap_content_info"]["content"].native


def profile_dict(der: bytes) -> dict[str, Any]:
    return plistlib.loads(signed_content(der))


def payload(profile: dict[str, Any], payload_type: str) -> dict[str, Any]:
    found = [p for p in profile["PayloadContent"] if p["PayloadType"] == payload_type]
    assert len(found) == 1, f"expected one {payload_type} payload, found {len(found)}"
    return found[0]


def challenge_of(profile: dict[str, Any]) -> str:
    return payload(profile, "com.apple.security.scep")["PayloadContent"]["Challenge"]
