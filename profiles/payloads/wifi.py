"""Wi-Fi: one network, WPA2/WPA3 Personal or Enterprise with EAP-TLS device certificates.

The local-government security guideline (seed 004, 図表42/43) asks for WPA2/WPA3-Enterprise with
IEEE 802.1X and EAP-TLS client certificates (device authentication, no user ID or password), so
Enterprise supports EAP-TLS only and always needs a certificate source and a way to check the
RADIUS server's certificate.

Security values: `wpa2_*` lets the device join WPA2 or WPA3 networks (iOS 16 and later treat
"WPA2" that way), `wpa3_*` WPA3 only.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from profiles.payloads.common import CACertificate, PayloadKind, StrictBoolean, StrictInteger

PERSONAL = ("wpa2_personal", "wpa3_personal")
ENTERPRISE = ("wpa2_enterprise", "wpa3_enterprise")
SECURITY = PERSONAL + ENTERPRISE

# "scep": the profile carries its own SCEP payload for a Wi-Fi identity.
# "enrollment_identity": the identity comes from the built-in CA that enrolled the device.
CERTIFICATE_SOURCES = ("scep", "enrollment_identity")

ENTERPRISE_FIELDS = (
    "eap_type",
    "certificate_source",
    "trusted_server_names",
    "trusted_root_certificates",
    "trusted_certificates_payload",
    "trust_builtin_ca",
    "identity",
    "scep",
)

_HEX_PSK = re.compile(r"^[0-9A-Fa-f]{64}$")
_SERVER_NAME = re.compile(
    r"^(\*\.)?[A-Za-z0-9*]([A-Za-z0-9*-]*[A-Za-z0-9])?(\.[A-Za-z0-9*]([A-Za-z0-9*-]*[A-Za-z0-9])?)+$"
)


def _ssid_bytes(value: str) -> None:
    size = len(value.encode("utf-8"))
    if size < 1 or size > 32:
        raise ValidationError(f"An SSID is 1 to 32 bytes in UTF-8; this one is {size} bytes.")


def _server_name(value: str) -> None:
    if not _SERVER_NAME.match(value):
        raise ValidationError(f"Not a server certificate name: {value!r}.")


def _http_url(value: str) -> None:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValidationError(f"Not an http(s) URL: {value!r}.")


class ProxySchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(("none", "manual", "auto")))
    host = fields.String(validate=validate.Length(min=1, max=255))
    port = StrictInteger(validate=validate.Range(min=1, max=65535))
    pac_url = fields.String(validate=_http_url)

    @validates_schema
    def _by_type(self, data: dict[str, Any], **kwargs: Any) -> None:
        kind = data["type"]
        needed = {"none": (), "manual": ("host", "port"), "auto": ("pac_url",)}[kind]
        errors = {name: [f"Required for a {kind} proxy."] for name in needed if name not in data}
        for name in ("host", "port", "pac_url"):
            if name in data and name not in needed:
                errors[name] = [f"Not used by a {kind} proxy."]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _plain(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return dict(data)


class ScepSchema(Schema):
    """Where a `scep` certificate source gets its identity; defaults to the built-in CA."""

    url = fields.String(validate=_http_url)
    key_size = StrictInteger(load_default=2048, validate=validate.OneOf((2048, 4096)))
    common_name = fields.String(validate=validate.Length(min=1, max=64))

    @post_load
    def _plain(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return dict(data)


class WifiSchema(Schema):
    ssid = fields.String(required=True, validate=_ssid_bytes)
    hidden = StrictBoolean(load_default=False)
    auto_join = StrictBoolean(load_default=True)
    security = fields.String(required=True, validate=validate.OneOf(SECURITY))
    password = fields.String()
    eap_type = fields.String(validate=validate.OneOf(("EAP-TLS",)))
    certificate_source = fields.String(validate=validate.OneOf(CERTIFICATE_SOURCES))
    scep = fields.Nested(ScepSchema)
    trusted_server_names = fields.List(
        fields.String(validate=_server_name), validate=validate.Length(min=1, max=20)
    )
    trusted_root_certificates = fields.List(CACertificate(), validate=validate.Length(min=1, max=20))
    # The key of a certificates payload in the same profile whose certificates are trusted.
    trusted_certificates_payload = fields.String(validate=validate.Length(min=1, max=64))
    # Trust the built-in CA (when it also issues the RADIUS server's certificate).
    trust_builtin_ca = StrictBoolean()
    # EAP identity (outer user name) some RADIUS servers want; the certificate is what counts.
    identity = fields.String(validate=validate.Length(min=1, max=253))
    proxy = fields.Nested(ProxySchema)

    @validates_schema
    def _by_security(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["security"] in PERSONAL:
            errors = self._personal_errors(data)
        else:
            errors = self._enterprise_errors(data)
        if errors:
            raise ValidationError(errors)

    @staticmethod
    def _personal_errors(data: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        password = data.get("password")
        if password is None:
            errors["password"] = ["A Personal network needs its password."]
        elif not (_HEX_PSK.match(password) or (8 <= len(password) <= 63 and password.isascii())):
            errors["password"] = ["A WPA password is 8 to 63 ASCII characters (or 64 hex digits)."]
        for name in ENTERPRISE_FIELDS:
            if name in data:
                errors[name] = ["Only used by an Enterprise network."]
        return errors

    @staticmethod
    def _enterprise_errors(data: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if "password" in data:
            errors["password"] = [
                "An Enterprise network authenticates with the device certificate (EAP-TLS), not a password."
            ]
        source = data.get("certificate_source")
        if source is None:
            errors["certificate_source"] = [
                "EAP-TLS needs a certificate source: 'scep' or 'enrollment_identity'."
            ]
        if "scep" in data and source != "scep":
            errors["scep"] = ["Only used when certificate_source is 'scep'."]
        if not data.get("trusted_server_names"):
            errors["trusted_server_names"] = [
                "Name the RADIUS server certificate(s) to trust, so the device never sends its identity "
                "to a look-alike access point."
            ]
        if not (
            data.get("trusted_root_certificates")
            or data.get("trusted_certificates_payload")
            or data.get("trust_builtin_ca")
        ):
            errors["trusted_root_certificates"] = [
                "Give the CA that issued the RADIUS server certificate: trusted_root_certificates, "
                "trusted_certificates_payload or trust_builtin_ca."
            ]
        return errors

    @post_load
    def _normalise(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        result = dict(data)
        if result["security"] in ENTERPRISE:
            result["eap_type"] = "EAP-TLS"
            if result.get("certificate_source") == "scep":
                result.setdefault("scep", {"key_size": 2048})
        return result


KIND = PayloadKind(
    name="wifi",
    schema=WifiSchema,
    title_ja="Wi-Fi",
    title_en="Wi-Fi",
    multiple=True,
)
