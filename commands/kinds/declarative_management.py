"""DeclarativeManagement: tell the device its declarations changed. `Data` carries the
SynchronizationTokens (the DeclarationsToken of its current set), so the device fetches the
declaration items at once instead of waiting for its own check."""

from __future__ import annotations

import json
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from commands.command_type import CommandType, Priority


class DeclarativeManagementParams(Schema):
    # JSON text of {"SyncTokens": {...}} kept as text so the stored parameters stay JSON.
    Data = fields.String(validate=validate.Length(min=2, max=4096))

    @validates("Data")
    def _tokens(self, value: str, **_kwargs: Any) -> None:
        try:
            document = json.loads(value)
        except ValueError as exc:
            raise ValidationError("must be JSON text of the synchronization tokens") from exc
        tokens = document.get("SyncTokens") if isinstance(document, dict) else None
        if not isinstance(tokens, dict) or not isinstance(tokens.get("DeclarationsToken"), str):
            raise ValidationError('must hold {"SyncTokens": {"DeclarationsToken": ..., "Timestamp": ...}}')


class DeclarativeManagement(CommandType):
    request_type = "DeclarativeManagement"
    schema = DeclarativeManagementParams
    description_ja = "宣言型デバイス管理の同期"
    description_en = "Synchronize declarative management"
    priority = Priority.NORMAL
    coalesce = True

    def to_apple(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"Data": params["Data"].encode("utf-8")} if params.get("Data") else {}
