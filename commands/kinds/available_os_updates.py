"""AvailableOSUpdates: the updates the device is offered; the answer is kept (commands.os_update_answers)
and feeds the unit's "latest" target and the release dates the update policy counts from."""

from __future__ import annotations

from commands.kinds.os_update_query import OsUpdateQuery
from commands.os_update_answers import record_available


class AvailableOSUpdates(OsUpdateQuery):
    request_type = "AvailableOSUpdates"
    description_ja = "利用可能なOSアップデートの取得"
    description_en = "List available OS updates"
    recorder = record_available
