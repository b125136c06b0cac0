"""The Android agent's device service: what /android/v1/enroll, /sync and /wait do.

Each handler in mdm/doors/android makes one call here (authenticate, decode, call, encode);
nothing here knows HTTP or commits. Commands come from the queue both platforms share
(commands.delivery); results go to the result handlers Apple's answers reach.
"""

from __future__ import annotations

from commands.delivery import commands_waiting
from mdm.services.android_channel.agent import PLATFORM, PROTOCOL_VERSION, ProtocolError
from mdm.services.android_channel.enrollment import Enrolled, SerialConflict, enroll
from mdm.services.android_channel.sync import start_wait, sync
from mdm.services.android_channel.wake import wake_channels

__all__ = [
    "PLATFORM",
    "PROTOCOL_VERSION",
    "Enrolled",
    "ProtocolError",
    "SerialConflict",
    "commands_waiting",
    "enroll",
    "start_wait",
    "sync",
    "wake_channels",
]
