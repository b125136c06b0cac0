"""The agent's side of the shared queue: commands rendered under their Android names, and the
agent's results turned into the reports the result handlers read.

Commands wait in the same queue as Apple's, under Apple's request types (commands.kinds.android
explains why). Here they are rendered under their Android names; the agent's results come back
as the Apple-shaped report `commands.results.record_result` expects, so the same handlers run
(incident locked, location received, wipe certificate).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from marshmallow import ValidationError
from sqlalchemy.orm import Session

from commands import results
from commands.catalog import equivalent_for
from commands.command_type import COMMAND_SECRET_PURPOSE
from commands.context import CommandContext
from commands.delivery import NOT_LOOKED, UndeliverableCommand, deliver_next_commands
from commands.kinds.android import ANDROID_COMMANDS
from mdm.ground.audit import Actor
from mdm.ground.models import Command, Device
from mdm.ground.secretbox import unseal
from mdm.services.android_channel.agent import MAX_COMMANDS_PER_SYNC, PLATFORM

_STATUS = {"acknowledged": "Acknowledged", "error": "Error", "not_now": "NotNow"}


def render(command: Command, secret_key: str) -> dict[str, Any]:
    """The command as the agent receives it: {"id", "type", "params"}; a sealed secret (a new
    password) is unsealed into its parameter here, in the answer only."""
    equivalent = equivalent_for(command.request_type, PLATFORM)
    if equivalent is None:
        raise UndeliverableCommand(f"{command.request_type} has no Android equivalent")
    params = equivalent.params(dict(command.params or {}))
    if equivalent.secret_param is not None and command.sealed_secret is not None:
        clear = unseal(secret_key, COMMAND_SECRET_PURPOSE, command.sealed_secret)
        params[equivalent.secret_param] = clear.decode("utf-8")
    try:
        clean = ANDROID_COMMANDS[equivalent.request_type]().load(params)
    except ValidationError as exc:
        raise UndeliverableCommand(f"{equivalent.request_type} parameters: {exc.messages}") from exc
    return {"id": command.uuid, "type": equivalent.request_type, "params": clean}


def take_commands(
    session: Session,
    device: Device,
    *,
    skip: set[str],
    actor: Actor,
    context: CommandContext,
    secret_key: str,
    looked_ahead: Command | None = NOT_LOOKED,
    looked_ahead_alone: bool = False,
) -> list[dict[str, Any]]:
    """The commands to hand over now (commands.delivery), rendered for the agent. `looked_ahead`:
    the command that waited first when the sync's identity read ran (None: nothing waited);
    `looked_ahead_alone`: no other waited."""
    return deliver_next_commands(
        session,
        device,
        lambda command: render(command, secret_key),
        limit=MAX_COMMANDS_PER_SYNC,
        offer_not_now=True,
        skip=skip,
        actor=actor,
        context=context,
        looked_ahead=looked_ahead,
        looked_ahead_alone=looked_ahead_alone,
    )


def record_results(
    session: Session,
    device: Device,
    items: list[dict[str, Any]],
    *,
    actor: Actor,
    identity: str | None = None,
    context: CommandContext,
) -> set[str]:
    """Record each result; returns the ids answered NotNow (not to be offered again right away)."""
    not_now: set[str] = set()
    for item in items:
        report = apple_report(item)
        raw = json.dumps(item, default=_jsonable, ensure_ascii=False, sort_keys=True).encode()
        results.record_result(session, device, report, raw, actor=actor, identity=identity, context=context)
        if item["status"] == "not_now":
            not_now.add(item["command_id"])
    return not_now


def apple_report(item: dict[str, Any]) -> dict[str, Any]:
    """One agent result as the report dictionary the result handlers read."""
    report: dict[str, Any] = {"CommandUUID": item["command_id"], "Status": _STATUS[item["status"]]}
    error = item.get("error")
    if item["status"] == "error":
        error = error or {}
        report["ErrorChain"] = [
            {
                "ErrorDomain": "android",
                "ErrorCode": error.get("code") or "error",
                "USEnglishDescription": error.get("message") or "",
            }
        ]
    location = item.get("location")
    if location:
        report["Latitude"] = location["latitude"]
        report["Longitude"] = location["longitude"]
        if location.get("accuracy_m") is not None:
            report["HorizontalAccuracy"] = location["accuracy_m"]
        if location.get("time") is not None:
            report["Timestamp"] = location["time"]
    return report


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)
