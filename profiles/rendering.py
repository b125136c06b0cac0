"""What a renderer takes (RenderContext) and gives back (RenderResult), for both platforms.

A setting a platform cannot express is listed in `unsupported`, never dropped silently. A setting
that is rendered, but with a caveat the administrator must know (supervised devices only, a wider
effect than on the other platform, a part the device agent supplies) is listed in `notes`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

APPLE = "apple"
ANDROID = "android"
PLATFORMS = (APPLE, ANDROID)


class RenderError(ValueError):
    """The spec cannot be rendered with this context (a piece the server must supply is missing)."""


@dataclass(frozen=True)
class ChallengeRequest:
    """What a SCEP challenge is being issued for; a provider can bind the challenge to it."""

    profile_identifier: str
    payload_key: str
    scep_url: str


# None: no challenge for this request (another CA's endpoint); the Challenge is left out.
ChallengeProvider = Callable[[ChallengeRequest], str | None]


@dataclass(frozen=True)
class RenderContext:
    """Server-side pieces a rendering needs that are not part of the profile spec.

    scep_url: the built-in CA's SCEP endpoint, used by EAP-TLS identities ("enrollment_identity",
        and "scep" without its own URL).
    scep_challenge: a fixed challenge, or a function returning one per (profile, payload); None
        leaves the Challenge out.
    scep_ca_fingerprint: SHA-1 or MD5 of the SCEP CA certificate (Apple `CAFingerprint`), optional.
    ca_certificate_pem: the built-in CA certificate, for Wi-Fi payloads with trust_builtin_ca.
    device_common_name: subject CN for identities requested through SCEP, when rendering for one
        device (its serial number or UDID); None renders a per-profile name and says so in notes.
    organization: PayloadOrganization and the identity certificate's O.
    secret_key: the instance secret, to reveal sealed secrets (Wi-Fi passphrases) of the spec;
        None leaves them out: give it only to a rendering made for delivery or for an
        administrator's export, never to one that is stored or shown (profiles.secret_settings).
    """

    scep_url: str | None = None
    scep_challenge: str | ChallengeProvider | None = None
    scep_ca_fingerprint: bytes | None = None
    ca_certificate_pem: str | None = None
    device_common_name: str | None = None
    organization: str = "Hikeshi MDM"
    secret_key: str | None = field(default=None, repr=False)

    def challenge_for(self, request: ChallengeRequest) -> str | None:
        if self.scep_challenge is None or isinstance(self.scep_challenge, str):
            return self.scep_challenge
        return self.scep_challenge(request)


@dataclass
class RenderResult:
    """`content`: .mobileconfig bytes (Apple, unsigned) or a Policy dict (Android).

    `unsupported` and `notes` entries are {"payload": key, "field": name, "reason"/"note": text}.
    """

    platform: str
    content: Any
    unsupported: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)

    def report_unsupported(self, payload: str, field_name: str, reason: str) -> None:
        self.unsupported.append({"payload": payload, "field": field_name, "reason": reason})

    def note(self, payload: str, field_name: str, note: str) -> None:
        self.notes.append({"payload": payload, "field": field_name, "note": note})


class SpecBuilder:
    """What both platforms' renderers start from: the spec, the context, the payload UUIDs (every
    payload must have one) and the result their caveats are written to."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        context: RenderContext,
        uuids: dict[str, str],
        result: RenderResult,
    ) -> None:
        self.spec = spec
        self.context = context
        self.uuids = uuids
        self.result = result
        self.payloads_by_key = {payload["key"]: payload for payload in spec["payloads"]}
        missing = [key for key in self.payloads_by_key if key not in uuids]
        if missing:
            raise RenderError(f"No payload UUID for {', '.join(missing)}.")
        self.begin()

    def begin(self) -> None:
        """What a platform's builder collects while it renders, set up before the first payload."""
