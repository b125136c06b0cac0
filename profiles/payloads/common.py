"""Shared by every payload kind: the kind descriptor, strict JSON fields, app entries, PEM certificates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from marshmallow import Schema, ValidationError, fields, post_load, validates_schema

# Reverse-DNS names: iOS bundle IDs allow hyphens, Android package names allow underscores.
BUNDLE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)+$")
PACKAGE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class PayloadKind:
    """One kind of payload a profile can carry, and how it is validated."""

    name: str
    schema: type[Schema]
    title_ja: str
    title_en: str
    # False: at most one payload of this kind per profile (two restriction sets would have to be
    # merged differently on each platform, so a profile says it once).
    multiple: bool


class StrictBoolean(fields.Boolean):
    """Only JSON true/false: "yes", 1 or "0" in a security policy is a mistake, not a boolean."""

    default_error_messages = {"invalid": "Not a boolean (use true or false)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInteger(fields.Integer):
    """Only JSON integers (not true/false, not "6", not 6.5)."""

    default_error_messages = {"invalid": "Not a whole number."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class AppSchema(Schema):
    """An app named for each platform: the same app has different IDs on iOS and Android."""

    name = fields.String(validate=lambda s: 0 < len(s) <= 128)
    bundle_id = fields.String()
    package_name = fields.String()

    @validates_schema
    def _ids(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        bundle_id = data.get("bundle_id")
        package_name = data.get("package_name")
        if bundle_id is None and package_name is None:
            errors["bundle_id"] = ["Give bundle_id (iOS) or package_name (Android), or both."]
        if bundle_id is not None and not BUNDLE_ID_RE.match(bundle_id):
            errors["bundle_id"] = [f"Not a bundle ID: {bundle_id!r}."]
        if package_name is not None and not PACKAGE_NAME_RE.match(package_name):
            errors["package_name"] = [f"Not an Android package name: {package_name!r}."]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _plain(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: data[key] for key in ("name", "bundle_id", "package_name") if key in data}


def app_list(**kwargs: Any) -> fields.List:
    return fields.List(fields.Nested(AppSchema), **kwargs)


def duplicate_app_errors(apps: list[dict[str, Any]]) -> list[str]:
    """Messages for IDs listed twice in one list."""
    seen: set[tuple[str, str]] = set()
    problems = []
    for app in apps:
        for id_field in ("bundle_id", "package_name"):
            value = app.get(id_field)
            if value is None:
                continue
            if (id_field, value) in seen:
                problems.append(f"{value} is listed twice.")
            seen.add((id_field, value))
    return problems


def load_certificate(text: str) -> x509.Certificate:
    """Exactly one PEM certificate, parsed; ValueError says what is wrong."""
    blocks = text.count("-----BEGIN CERTIFICATE-----")
    if blocks != 1:
        raise ValueError(f"Expected exactly one PEM certificate, found {blocks}.")
    try:
        return x509.load_pem_x509_certificate(text.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"Not a readable PEM certificate: {exc}") from exc


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificate_der(pem: str) -> bytes:
    return load_certificate(pem).public_bytes(serialization.Encoding.DER)


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


class CACertificate(fields.String):
    """A PEM root or intermediate CA certificate, stored in canonical PEM form."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            cert = load_certificate(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        # A v1 root has no extensions at all; anything with BasicConstraints must say CA.
        if constraints is not None and not constraints.ca:
            raise ValidationError(
                f"{common_name(cert)} is not a CA certificate (BasicConstraints CA is false)."
            )
        return certificate_pem(cert)
