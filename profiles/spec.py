"""The platform-neutral profile spec: what an administrator writes and what the database stores.

    {"identifier": "jp.example.fd.field-tablet",      # reverse DNS, never changes
     "name_ja": "現場タブレット標準", "name_en": "Field tablet baseline",
     "description": "...",
     "payloads": [{"kind": "passcode", "key": "passcode.1", "settings": {...}}, ...]}

`validate_spec` turns outside data into the stored form (settings validated by their kind's
schema, defaults filled in, every payload given a key). A payload's key names it across versions:
give one explicitly (`"key": "station-wifi"`) to keep a payload's identity when payloads are
reordered; otherwise it is `<kind>.<n>` (the n-th payload of that kind).

Payload UUIDs are derived from the profile identifier, kind and key (uuid5), so they stay the same
across versions; Apple then updates the installed payload in place instead of replacing it (an
SCEP identity is not re-issued, a Wi-Fi network is not forgotten).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from profiles.payloads import KINDS, kind_names

IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)+$")
# A chosen key starts with a letter and has no dot; `<kind>.<n>` is the generated form. Keeping the
# two apart keeps every PayloadIdentifier in a profile distinct.
KEY_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,63}|[a-z_]+\.[1-9][0-9]{0,2})$")

# Fixed namespace for every Hikeshi profile UUID (uuid5); changing it would change every UUID.
UUID_NAMESPACE = uuid.UUID("6f1c3a52-8a4e-5d3b-9f0e-48494b455348")


class PayloadSpecSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(kind_names()))
    key = fields.String(
        validate=validate.Regexp(KEY_RE, error="A letter, then letters, digits, '_' or '-' (at most 64).")
    )
    settings = fields.Dict(keys=fields.String(), required=True)

    @post_load
    def _load_settings(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        schema = KINDS[data["kind"]].schema()
        try:
            settings = schema.load(data["settings"])
        except ValidationError as err:
            raise ValidationError({"settings": err.messages}) from err
        result = {"kind": data["kind"], "settings": settings}
        if "key" in data:
            result["key"] = data["key"]
        return result


class ProfileSpecSchema(Schema):
    identifier = fields.String(
        required=True,
        validate=[
            validate.Length(max=200),
            validate.Regexp(IDENTIFIER_RE, error="A reverse-DNS identifier such as jp.example.fd.tablet."),
        ],
    )
    name_ja = fields.String(required=True, validate=validate.Length(min=1, max=128))
    name_en = fields.String(required=True, validate=validate.Length(min=1, max=128))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    payloads = fields.List(
        fields.Nested(PayloadSpecSchema), required=True, validate=validate.Length(min=1, max=50)
    )

    @validates_schema
    def _across_payloads(self, data: dict[str, Any], **kwargs: Any) -> None:
        payloads = data["payloads"]
        keys = payload_keys(payloads)
        errors: dict[int, dict[str, Any]] = {}

        def fail(index: int, path: tuple[str, ...], message: str) -> None:
            node = errors.setdefault(index, {})
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node.setdefault(path[-1], []).append(message)

        seen_keys: dict[str, int] = {}
        seen_kinds: dict[str, int] = {}
        seen_ssids: dict[str, int] = {}
        for index, (payload, key) in enumerate(zip(payloads, keys, strict=True)):
            kind = payload["kind"]
            if "." in key and key.split(".")[0] != kind:
                fail(index, ("key",), f"Key {key!r} has the form of a generated {key.split('.')[0]} key.")
            if key in seen_keys:
                fail(index, ("key",), f"Key {key!r} is already used by payload {seen_keys[key]}.")
            seen_keys.setdefault(key, index)
            if not KINDS[kind].multiple and kind in seen_kinds:
                fail(
                    index,
                    ("kind",),
                    f"A profile has at most one {kind} payload (see payload {seen_kinds[kind]}).",
                )
            seen_kinds.setdefault(kind, index)
            if kind == "wifi":
                ssid = payload["settings"]["ssid"]
                if ssid in seen_ssids:
                    fail(
                        index,
                        ("settings", "ssid"),
                        f"SSID {ssid!r} is already configured by payload {seen_ssids[ssid]}.",
                    )
                seen_ssids.setdefault(ssid, index)

        certificate_keys = {
            key for payload, key in zip(payloads, keys, strict=True) if payload["kind"] == "certificates"
        }
        for index, payload in enumerate(payloads):
            ref = (
                payload["settings"].get("trusted_certificates_payload") if payload["kind"] == "wifi" else None
            )
            if ref is not None and ref not in certificate_keys:
                fail(
                    index,
                    ("settings", "trusted_certificates_payload"),
                    f"No certificates payload with key {ref!r} in this profile.",
                )
        if errors:
            raise ValidationError({"payloads": errors})

    @post_load
    def _keyed(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        payloads = [
            {"kind": payload["kind"], "key": key, "settings": payload["settings"]}
            for payload, key in zip(data["payloads"], payload_keys(data["payloads"]), strict=True)
        ]
        return {
            "identifier": data["identifier"],
            "name_ja": data["name_ja"],
            "name_en": data["name_en"],
            "description": data["description"],
            "payloads": payloads,
        }


def validate_spec(data: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of a profile spec; marshmallow ValidationError names every bad field."""
    if not isinstance(data, Mapping):
        raise ValidationError("A profile spec is a JSON object.")
    return ProfileSpecSchema().load(dict(data))


def payload_keys(payloads: list[dict[str, Any]]) -> list[str]:
    """Each payload's key: its own, or `<kind>.<n>` counting payloads of that kind from 1."""
    counts: dict[str, int] = {}
    keys = []
    for payload in payloads:
        kind = payload["kind"]
        counts[kind] = counts.get(kind, 0) + 1
        keys.append(payload.get("key") or f"{kind}.{counts[kind]}")
    return keys


def payload_identifier(profile_identifier: str, payload: Mapping[str, Any]) -> str:
    """`<profile identifier>.<kind>.<n>`, or `<profile identifier>.<kind>.<key>` for a chosen key."""
    key = payload["key"]
    kind = payload["kind"]
    if key.startswith(f"{kind}."):
        return f"{profile_identifier}.{key}"
    return f"{profile_identifier}.{kind}.{key}"


def payload_uuid(profile_identifier: str, kind: str, key: str) -> str:
    return str(uuid.uuid5(UUID_NAMESPACE, f"payload:{profile_identifier}:{kind}:{key}")).upper()


def profile_uuid(profile_identifier: str, version: int) -> str:
    """The whole profile's PayloadUUID: one per version, so a ProfileList answer tells which
    version a device has installed (payload UUIDs inside stay the same)."""
    return str(uuid.uuid5(UUID_NAMESPACE, f"profile:{profile_identifier}:v{version}")).upper()


def derived_uuid(parent_uuid: str, label: str) -> str:
    """UUID of a payload the renderer adds for another one (its identity, a trusted certificate)."""
    return str(uuid.uuid5(uuid.UUID(parent_uuid), label)).upper()


def assign_payload_uuids(
    spec: Mapping[str, Any],
    previous_spec: Mapping[str, Any] | None = None,
    previous_uuids: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Key → UUID for every payload of `spec`, keeping the UUID a key had in the previous version
    unless the payload under that key changed kind."""
    previous_kinds = {p["key"]: p["kind"] for p in (previous_spec or {}).get("payloads", [])}
    previous_uuids = previous_uuids or {}
    identifier = spec["identifier"]
    result = {}
    for payload in spec["payloads"]:
        key, kind = payload["key"], payload["kind"]
        kept = previous_uuids.get(key)
        if kept is not None and previous_kinds.get(key) == kind:
            result[key] = kept
        else:
            result[key] = payload_uuid(identifier, kind, key)
    return result
