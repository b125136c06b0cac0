"""What an uploaded in-house iOS app (.ipa) is, and the manifest a device downloads it through.

The .ipa is a ZIP with Payload/<name>.app/Info.plist; its bundle identifier and version are read
from there. The manifest (the plist InstallApplication's ManifestURL names) pins the .ipa by its
SHA-256 (`sha256s` over one chunk of `sha256-size` bytes: the whole file), so a file changed on
the way, or at rest, is refused by the device.
"""

from __future__ import annotations

import hashlib
import io
import plistlib
import re
import zipfile
from dataclasses import dataclass
from typing import Any

_INFO_PLIST = re.compile(r"^Payload/[^/]+\.app/Info\.plist$")


class IpaError(ValueError):
    """Not an .ipa Hikeshi can serve; the message says what is wrong."""


@dataclass(frozen=True)
class IpaFacts:
    bundle_id: str
    version: str | None
    build: str | None
    name: str | None
    sha256: str
    size: int


def read_ipa(data: bytes) -> IpaFacts:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [n for n in archive.namelist() if _INFO_PLIST.match(n)]
        if len(names) != 1:
            raise IpaError("not an .ipa: expected exactly one Payload/<name>.app/Info.plist")
        info = plistlib.loads(archive.read(names[0]))
    except (zipfile.BadZipFile, OSError, plistlib.InvalidFileException, ValueError) as exc:
        if isinstance(exc, IpaError):
            raise
        raise IpaError("not an .ipa: unreadable archive or Info.plist") from exc
    if not isinstance(info, dict):
        raise IpaError("Info.plist is not a dictionary")
    bundle_id = info.get("CFBundleIdentifier")
    if not isinstance(bundle_id, str) or not bundle_id:
        raise IpaError("Info.plist has no CFBundleIdentifier")

    def text(key: str) -> str | None:
        value = info.get(key)
        return value[:64] if isinstance(value, str) and value else None

    return IpaFacts(
        bundle_id=bundle_id,
        version=text("CFBundleShortVersionString"),
        build=text("CFBundleVersion"),
        name=(text("CFBundleDisplayName") or text("CFBundleName")),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def manifest_plist(
    *, ipa_url: str, sha256: str, size: int, bundle_id: str, version: str | None, title: str
) -> bytes:
    """The software manifest of one .ipa (the format of Apple's over-the-air distribution)."""
    asset: dict[str, Any] = {
        "kind": "software-package",
        "url": ipa_url,
        "sha256-size": size,
        "sha256s": [sha256],
    }
    metadata: dict[str, Any] = {"bundle-identifier": bundle_id, "kind": "software", "title": title}
    if version:
        metadata["bundle-version"] = version
    return plistlib.dumps({"items": [{"assets": [asset], "metadata": metadata}]}, fmt=plistlib.FMT_XML)
