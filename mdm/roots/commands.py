"""The commands' context, built once by each composition root (app, CLI, scheduler): the settings
their results need, and the profile services above the queue (commands cannot import them:
profiles queues its installs through commands)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from commands.context import CommandContext, ProfileDuties, attach_to_sessions
from mdm.ground.config import Settings
from profiles.device_identity import make_for_device
from profiles.enforcement import compare_profile_list


def profile_duties() -> ProfileDuties:
    return ProfileDuties(install_for_device=make_for_device, profile_list_answered=compare_profile_list)


def build_command_context(settings: Settings | None) -> CommandContext:
    """`settings` None: wipe certificates wait for the next holder of the settings to sign them."""
    return CommandContext(settings=settings, profiles=profile_duties())


def wire_commands(factory: sessionmaker[Session], settings: Settings | None) -> CommandContext:
    """Build the context and let the factory's sessions carry it to the device doors, which do not
    pass it yet (commands.context.attach_to_sessions)."""
    context = build_command_context(settings)
    attach_to_sessions(factory, context)
    return context
