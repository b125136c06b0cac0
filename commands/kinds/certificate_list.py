"""CertificateList: the certificates installed on the device, into inventory."""

from __future__ import annotations

from marshmallow import Schema, fields

from commands.kinds.inventory_query import InventoryQuery
from mdm.services.inventory.parsers.certificates import parse_certificate_list


class CertificateListParams(Schema):
    ManagedOnly = fields.Boolean()


class CertificateList(InventoryQuery):
    request_type = "CertificateList"
    schema = CertificateListParams
    description_ja = "証明書一覧の取得"
    description_en = "List installed certificates"
    parser = parse_certificate_list
