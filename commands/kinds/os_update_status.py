"""OSUpdateStatus: download and install progress of the device's updates, kept for the console."""

from __future__ import annotations

from commands.kinds.os_update_query import OsUpdateQuery
from commands.os_update_answers import record_status


class OSUpdateStatus(OsUpdateQuery):
    request_type = "OSUpdateStatus"
    description_ja = "OSアップデートの進行状況の取得"
    description_en = "Get OS update progress"
    recorder = record_status
