"""What the AMAPI sender (mdm.services.amapi.commands) and the wipe (mdm.services.amapi.wipe)
share: who acts, what they need of the client, what a run did, and a refusal recorded."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from commands.context import CommandContext
from commands.results import record_result
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import AmapiCommandSend, Command, CommandStatus
from mdm.ground.models.amapi_ops import amapi_identity

SENDER = Actor("system:amapi", "system")


class AmapiCaller(Protocol):
    """What the sender needs of mdm.ground.amapi_client.AmapiClient."""

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]: ...


@dataclass
class SendReport:
    issued: int = 0
    adopted: int = 0
    settled: int = 0
    refused: int = 0
    failed_devices: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # the scheduler job's result, field by field (copies, not the live lists)


def refused_for_good(exc: Exception) -> bool:
    """Google refused the request itself (400, 403, 404...): sending it again changes nothing."""
    status = getattr(exc, "status", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in (401, 408, 429)


def record_refusal(
    session: Session, command_id: int, device_name: str, exc: Exception, context: CommandContext
) -> None:
    """Google refused the call itself: the command failed, and says why."""
    command = session.get(Command, command_id)
    if command is None or command.status in CommandStatus.FINAL:
        return
    send = session.get(AmapiCommandSend, command_id)
    code = str(getattr(exc, "code", "") or getattr(exc, "status", "") or "REFUSED")
    if send is not None:
        send.done_at = clock.now()
        send.error_code = code[:64]
        send.error_message = str(exc)[:512]
    report = {
        "CommandUUID": command.uuid,
        "Status": "Error",
        "ErrorChain": [
            {"ErrorDomain": "androidmanagement", "ErrorCode": code, "USEnglishDescription": str(exc)[:500]}
        ],
    }
    record_result(
        session,
        command.device,
        report,
        json.dumps(report).encode(),
        actor=SENDER,
        identity=amapi_identity(device_name),
        context=context,
    )
