"""The commands' context, built once by the wiring of each composition root (app, CLI, scheduler):
the settings their results need, and the profile services above the queue (commands cannot import
them: profiles queues its installs through commands)."""

from __future__ import annotations

from commands.context import CommandContext, ProfileDuties
from mdm.ground.config import Settings
from profiles.android_policy import password_policies_for_device
from profiles.device_identity import make_for_device
from profiles.enforcement import compare_profile_list


def profile_duties() -> ProfileDuties:
    return ProfileDuties(
        install_for_device=make_for_device,
        profile_list_answered=compare_profile_list,
        android_password_policies=password_policies_for_device,
    )


def build_command_context(settings: Settings | None) -> CommandContext:
    """`settings` None: wipe certificates wait for the next holder of the settings to sign them."""
    return CommandContext(settings=settings, profiles=profile_duties())
