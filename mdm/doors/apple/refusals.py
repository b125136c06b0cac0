"""How the Apple device doors answer a request they refuse: plain text, the status Apple's
protocol gives each reason, and a log line for what a person may need to look at."""

from __future__ import annotations

import logging

from flask import Response, request

from mdm.doors.apple.auth import Unauthenticated
from mdm.doors.apple.plist_codec import PlistError
from mdm.doors.bodies import BodyTooLarge, plain
from mdm.services import apple_channel

# Every refusal a device request can meet between reading its body and the service's answer.
REFUSALS = (
    BodyTooLarge,
    Unauthenticated,
    apple_channel.DeviceIdentityError,
    apple_channel.UserChannelRefused,
    apple_channel.IdentityRefused,
    PlistError,
    apple_channel.CheckinMessageError,
    apple_channel.UnsupportedMessage,
    apple_channel.DeclarationNotFound,
)


def refused(exc: Exception, door: str, logger: str) -> Response:
    """The answer to a refusal from REFUSALS on `door` ("check-in", "connect"), logged under the
    door module's name (`logger`), where operators look for it."""
    log = logging.getLogger(logger)
    if isinstance(exc, BodyTooLarge):
        return plain(413, str(exc))
    if isinstance(exc, Unauthenticated | apple_channel.DeviceIdentityError):
        log.warning("%s refused from %s: %s", door, request.remote_addr, exc)
        return plain(401, "device authentication failed")
    if isinstance(exc, apple_channel.UserChannelRefused):
        return plain(410, str(exc))
    if isinstance(exc, apple_channel.IdentityConflict):
        log.warning("identity conflict from %s for %s: %s", request.remote_addr, exc.udid, exc.reason)
        return plain(403, f"identity conflict: {exc.reason}")
    if isinstance(exc, apple_channel.IdentityRefused):
        log.warning("%s refused from %s: %s", door, request.remote_addr, exc)
        return plain(403, f"identity refused: {exc}")
    if isinstance(exc, apple_channel.DeclarationNotFound):
        return plain(404, str(exc))
    return plain(400, str(exc))
