"""What the finder of a lost tablet sees on its screen, read from the commands the tablet
acknowledged: the message, callback number and footnote exactly as sent in that command.

Nothing is claimed that the tablet did not answer (DESIGN.md invariant 5): a lock still waiting
shows no text as displayed, only as sent; a DeviceLock answered NoPasscodeSet displayed nothing;
a DeviceLock answered DeviceInLostMode shows the lost-mode screen of the earlier EnableLostMode the
tablet acknowledged (unknown when Hikeshi never sent one); an answer without a MessageResult leaves
the display unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commands.incidents.steps import LOCK_PURPOSE
from mdm.ground.models import Command, CommandStatus
from mdm.ground.models.incident import Incident


class FinderState:
    NOTHING_SENT = "nothing_sent"  # no lock was sent for this incident
    NOT_ACKNOWLEDGED = "not_acknowledged"  # sent; the tablet has not answered: unknown
    SHOWN = "shown"  # the tablet acknowledged a lock screen with this text
    NOT_SHOWN = "not_shown"  # acknowledged, but it said the message was not displayed
    UNKNOWN = "unknown"  # acknowledged, without saying whether the message was displayed
    FAILED = "failed"  # the tablet answered with an error: it shows nothing of ours
    ENDED = "ended"  # lost mode ended (DisableLostMode acknowledged)


@dataclass(frozen=True)
class ScreenText:
    request_type: str
    command_uuid: str
    message: str | None
    phone_number: str | None
    footnote: str | None
    at: datetime | None


@dataclass(frozen=True)
class FinderScreen:
    state: str
    # What the tablet shows (SHOWN), or what the answered command carried (other states).
    text: ScreenText | None
    # A newer lock the tablet has not answered yet: its text is not on the screen (yet).
    waiting: ScreenText | None

    @property
    def key(self) -> str:
        """Changes whenever what the page shows would change (the live page reloads on it)."""
        shown = self.text.command_uuid if self.text else "-"
        waiting = self.waiting.command_uuid if self.waiting else "-"
        return f"{self.state}:{shown}:{waiting}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "text": None if self.text is None else vars(self.text),
            "waiting": None if self.waiting is None else vars(self.waiting),
            "key": self.key,
        }


def _text(command: Command) -> ScreenText:
    params = command.params or {}
    return ScreenText(
        command.request_type,
        command.uuid,
        params.get("Message"),
        params.get("PhoneNumber"),
        params.get("Footnote"),
        command.acknowledged_at or command.error_at or command.queued_at,
    )


def finder_screen(incident: Incident) -> FinderScreen:
    commands = sorted((link.command for link in incident.commands), key=lambda c: c.id)
    locks = [c for c in commands if c.request_type in ("DeviceLock", "EnableLostMode")]
    answered = [c for c in locks if c.status in (CommandStatus.ACKNOWLEDGED, CommandStatus.ERROR)]
    newest = answered[-1] if answered else None
    pending = [c for c in locks if c.status in CommandStatus.PENDING and (newest is None or c.id > newest.id)]
    waiting = _text(pending[-1]) if pending else None
    if newest is None:
        sent = any(link.purpose == LOCK_PURPOSE for link in incident.commands)
        state = FinderState.NOT_ACKNOWLEDGED if sent else FinderState.NOTHING_SENT
        return FinderScreen(state, None, waiting)
    ended = any(
        c.request_type == "DisableLostMode" and c.status == CommandStatus.ACKNOWLEDGED and c.id > newest.id
        for c in commands
    )
    if ended:
        return FinderScreen(FinderState.ENDED, None, waiting)
    if newest.status == CommandStatus.ERROR:
        return FinderScreen(FinderState.FAILED, _text(newest), waiting)
    if newest.request_type == "EnableLostMode" or newest.message_result == "Success":
        return FinderScreen(FinderState.SHOWN, _text(newest), waiting)
    if newest.message_result == "NoPasscodeSet":
        return FinderScreen(FinderState.NOT_SHOWN, _text(newest), waiting)
    if newest.message_result == "DeviceInLostMode":
        acknowledged = [c for c in answered if c.status == CommandStatus.ACKNOWLEDGED]
        earlier = [c for c in acknowledged if c.request_type == "EnableLostMode"]
        if earlier:
            return FinderScreen(FinderState.SHOWN, _text(earlier[-1]), waiting)
    return FinderScreen(FinderState.UNKNOWN, _text(newest), waiting)
