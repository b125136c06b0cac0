"""InstalledApplicationList: the apps on the device, into inventory (installs, removals, updates)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from commands.kinds.inventory_query import InventoryQuery
from mdm.services.inventory.parsers.applications import parse_installed_applications


class InstalledApplicationListParams(Schema):
    ManagedAppsOnly = fields.Boolean()
    Identifiers = fields.List(fields.String(validate=validate.Length(min=1, max=255)))


class InstalledApplicationList(InventoryQuery):
    request_type = "InstalledApplicationList"
    schema = InstalledApplicationListParams
    description_ja = "インストール済みアプリ一覧の取得"
    description_en = "List installed apps"
    parser = parse_installed_applications
