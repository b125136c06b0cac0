"""Certificates: root and intermediate CA certificates the device should trust."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from profiles.payloads.common import CACertificate, PayloadKind


class CertificatesSchema(Schema):
    certificates = fields.List(CACertificate(), required=True, validate=validate.Length(min=1, max=50))

    @validates_schema
    def _distinct(self, data: dict[str, Any], **kwargs: Any) -> None:
        if len(set(data["certificates"])) != len(data["certificates"]):
            raise ValidationError({"certificates": ["The same certificate is listed twice."]})

    @post_load
    def _plain(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return dict(data)


KIND = PayloadKind(
    name="certificates",
    schema=CertificatesSchema,
    title_ja="証明書",
    title_en="Certificates",
    multiple=True,
)
