"""SecurityInfo: how the device is secured (passcode, encryption, FileVault), into inventory."""

from __future__ import annotations

from commands.command_type import NoParams
from commands.kinds.inventory_query import InventoryQuery
from mdm.services.inventory.parsers.security_info import parse_security_info


class SecurityInfo(InventoryQuery):
    request_type = "SecurityInfo"
    schema = NoParams
    description_ja = "セキュリティ情報の取得"
    description_en = "Collect security information"
    parser = parse_security_info
