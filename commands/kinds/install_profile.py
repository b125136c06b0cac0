"""InstallProfile: install a (signed) configuration profile.

An install may ask to be made for its device at delivery (`DeviceIdentity`: the profile and version
it carries): a profile with an EAP-TLS Wi-Fi identity from the built-in CA needs a SCEP challenge
that is one device's and usable once, so it is never part of the shared, stored profile. profiles/
knows how (profiles.device_identity.make_for_device) and reaches this command through the
CommandContext; the challenge then exists only in the bytes handed to the device, never in the
command's parameters or the audit log. The answer moves the device's DeviceProfileState on.
"""

from __future__ import annotations

import base64
import binascii
import logging
import plistlib
from typing import TYPE_CHECKING, Any

from asn1crypto import cms
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select
from sqlalchemy.orm import object_session

from commands.command_type import CommandType, DeliveryContext, Priority, UndeliverableCommand
from mdm.ground import clock
from mdm.ground.models import CommandStatus, DeviceProfileState, ProfileRendering
from mdm.ground.redaction import is_secret_key

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command

log = logging.getLogger(__name__)

MAX_PROFILE_BYTES = 512 * 1024


class ProfileData(fields.Field):
    """Profile bytes (a signed .mobileconfig). Accepts bytes or base64 text; stored as base64 text
    so the command's parameters stay JSON."""

    default_error_messages = {
        "invalid": "must be the profile as bytes or base64 text",
        "empty": "must not be empty",
        "too_large": f"must be at most {MAX_PROFILE_BYTES} bytes",
        "secret": (
            "carries a secret ({where}): it would be stored with the command in clear; create a "
            "profile instead (its secrets are sealed and added when the command is delivered)"
        ),
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, (bytes, bytearray)):
            raw = bytes(value)
        elif isinstance(value, str):
            try:
                raw = base64.b64decode("".join(value.split()), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise self.make_error("invalid") from exc
        else:
            raise self.make_error("invalid")
        if not raw:
            raise self.make_error("empty")
        if len(raw) > MAX_PROFILE_BYTES:
            raise self.make_error("too_large")
        where = secret_in_profile(raw)
        if where is not None:
            raise self.make_error("secret", where=where)
        return base64.b64encode(raw).decode("ascii")


def _plist_of(raw: bytes) -> Any:
    if raw.startswith(b"bplist00") or raw.lstrip().startswith(b"<"):
        return plistlib.loads(raw)
    # A signed profile: DER CMS SignedData around the plist (an encrypted one is opaque here).
    return plistlib.loads(bytes(cms.ContentInfo.load(raw)["content"]["encap_content_info"]["content"].native))


def secret_in_profile(raw: bytes) -> str | None:
    """Where a profile carries a secret in clear ("com.apple.wifi.managed Password"), or None.

    A profile that cannot be read here (encrypted payloads, or not a profile at all) has nothing
    readable to leak and is left to the device to judge."""
    try:
        document = _plist_of(raw)
    except Exception:
        return None

    def walk(node: Any, payload_type: str) -> str | None:
        if isinstance(node, dict):
            payload_type = str(node.get("PayloadType") or payload_type)
            for key, value in node.items():
                if isinstance(value, (str, bytes)) and value and is_secret_key(str(key)):
                    return f"{payload_type} {key}".strip()
                found = walk(value, payload_type)
                if found:
                    return found
        elif isinstance(node, list):
            for item in node:
                found = walk(item, payload_type)
                if found:
                    return found
        return None

    return walk(document, "")


class DeviceIdentitySchema(Schema):
    """Which saved profile version to make for the device at delivery (no secret here)."""

    profile_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))


class RenderingSchema(Schema):
    """A saved profile version's stored signed rendering (profiles.signing), by reference: a
    profile assigned to ten thousand devices is stored once, not once per command. The digest
    pins the exact bytes queued; delivery refuses a rendering that no longer matches it."""

    profile_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))


class InstallProfileParams(Schema):
    # The shared signed profile (given directly, or by reference to its stored rendering); also
    # what is sent when it cannot be made for the device.
    Payload = ProfileData()
    Rendering = fields.Nested(RenderingSchema)
    DeviceIdentity = fields.Nested(DeviceIdentitySchema)

    @validates_schema
    def _one_profile(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("Payload" in data) == ("Rendering" in data):
            raise ValidationError(
                "give the profile as Payload or as a stored Rendering (one of them)", "Payload"
            )


# Keys of the Apple command that only the delivery step reads; never sent to the device.
_DELIVERY_KEY = "_DeviceIdentity"
_RENDERING_KEY = "_Rendering"


def _stored_payload(reference: dict[str, Any], delivery: DeliveryContext) -> bytes:
    """The bytes of the stored rendering a command refers to, as they were when it was queued."""
    session = object_session(delivery.device)
    row = None
    if session is not None:
        row = session.scalars(
            select(ProfileRendering).where(
                ProfileRendering.profile_id == reference["profile_id"],
                ProfileRendering.version == reference["version"],
                ProfileRendering.platform == "apple",
            )
        ).first()
    if row is None or row.sha256 != reference["sha256"]:
        # Never send other bytes than the ones queued (and audited by digest).
        raise UndeliverableCommand(
            f"the signed profile {reference['profile_id']} v{reference['version']} queued with this "
            "command is no longer stored as it was"
        )
    return row.content


def profile_state_for_command(session: Session, command: Command) -> DeviceProfileState | None:
    """The device's profile whose install or removal is this command."""
    return session.scalars(
        select(DeviceProfileState).where(
            DeviceProfileState.device_id == command.device_id,
            DeviceProfileState.pending_command_uuid == command.uuid,
        )
    ).first()


def _error_text(report: dict[str, Any]) -> str:
    chain = report.get("ErrorChain")
    parts = []
    if isinstance(chain, list):
        for item in chain:
            if isinstance(item, dict):
                text = item.get("USEnglishDescription") or item.get("LocalizedDescription")
                code = item.get("ErrorCode")
                parts.append(f"{item.get('ErrorDomain', '?')} {code}: {text}" if text else f"{code}")
    return ("; ".join(parts) or str(report.get("Status") or "error"))[:255]


class InstallProfile(CommandType):
    request_type = "InstallProfile"
    schema = InstallProfileParams
    description_ja = "構成プロファイルのインストール"
    description_en = "Install a configuration profile"
    priority = Priority.HIGH

    def to_apple(self, params: dict[str, Any]) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        if isinstance(params.get("Rendering"), dict):
            # Read from the database at delivery (at_delivery): only the reference is stored.
            keys[_RENDERING_KEY] = dict(params["Rendering"])
        else:
            try:
                keys["Payload"] = base64.b64decode(params["Payload"])
            except (KeyError, binascii.Error, TypeError) as exc:
                raise ValidationError("stored Payload is not base64", "Payload") from exc
        if isinstance(params.get("DeviceIdentity"), dict):
            keys[_DELIVERY_KEY] = dict(params["DeviceIdentity"])
        return keys

    def at_delivery(self, keys: dict[str, Any], delivery: DeliveryContext) -> dict[str, Any]:
        reference = keys.pop(_RENDERING_KEY, None)
        if reference is not None:
            keys["Payload"] = _stored_payload(reference, delivery)
        marker = keys.pop(_DELIVERY_KEY, None)
        if marker is None:
            return keys
        profiles = delivery.context.profiles
        if profiles is None:
            return keys
        try:
            keys = profiles.install_for_device(keys, marker, delivery)
        except Exception:
            # The shared profile still installs everything but the device's own identity; a
            # device must never be left without its command because of this step.
            log.exception("InstallProfile for device %s: per-device rendering failed", delivery.device.id)
        keys.pop(_DELIVERY_KEY, None)
        return keys

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        state = profile_state_for_command(session, command)
        if state is None:
            return
        if command.status == CommandStatus.ACKNOWLEDGED:
            state.installed_version = state.pending_version
            state.install_acknowledged_at = clock.now()
            state.first_confirmed_at = state.first_confirmed_at or state.install_acknowledged_at
            state.last_error = None
        else:
            state.last_error = _error_text(report)
        state.pending_command_uuid = state.pending_action = state.pending_version = None
        state.updated_at = clock.now()
