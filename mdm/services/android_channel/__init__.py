"""The Android agent's device service: what /android/v1/enroll, /sync and /wait do.

Each handler in mdm/doors/android makes one call here (authenticate, decode, call, encode):
the door reads the credential a request presents, and the call decides who it is (identity);
nothing here knows HTTP or commits. Commands come from the queue both platforms share
(commands.delivery); results go to the result handlers Apple's answers reach.
"""

from __future__ import annotations

from commands.delivery import commands_waiting
from mdm.services.android_channel.agent import PLATFORM, PROTOCOL_VERSION, ProtocolError
from mdm.services.android_channel.enrollment import Enrolled, SerialConflict, enroll
from mdm.services.android_channel.identity import (
    AuthenticatedDevice,
    Credential,
    ForwardedCertificate,
    SignedRequest,
    Unauthenticated,
    authenticate,
    purge_expired_nonces,
)
from mdm.services.android_channel.sync import start_wait, sync
from mdm.services.android_channel.wake import wake_channels
from mdm.services.android_channel.wifi_certificate import issue_wifi_certificate

__all__ = [
    "PLATFORM",
    "PROTOCOL_VERSION",
    "AuthenticatedDevice",
    "Credential",
    "Enrolled",
    "ForwardedCertificate",
    "ProtocolError",
    "SerialConflict",
    "SignedRequest",
    "Unauthenticated",
    "authenticate",
    "commands_waiting",
    "enroll",
    "issue_wifi_certificate",
    "purge_expired_nonces",
    "start_wait",
    "sync",
    "wake_channels",
]
