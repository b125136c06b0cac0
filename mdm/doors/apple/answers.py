"""A command answer past HIKESHI_MAX_COMMAND_ANSWER on /mdm/connect.

It is streamed through the signature check (never held whole, never parsed), up to
HIKESHI_MAX_COMMAND_ANSWER_READ. Only when the signature verifies and the certificate is bound to
a device is anything written: that device's command fails with the reason and an alert is raised
(mdm.services.apple_channel.answer_too_large). An unverifiable body changes nothing and gets
413, like one past the read limit. Either way the device is told 413, the status Apple documents
for a body too large.
"""

from __future__ import annotations

import logging

from flask import Response, request
from sqlalchemy.orm import Session

from mdm.doors.appctx import client_ip
from mdm.doors.apple.auth import Unauthenticated, streamed_request_identity
from mdm.doors.bodies import BodyTooLarge, OversizedBody, plain
from mdm.ground.config import Settings
from mdm.services import apple_channel

log = logging.getLogger(__name__)


def oversized_answer(session: Session, body: OversizedBody, conf: Settings) -> Response:
    req = request
    limit = conf.max_command_answer_bytes
    try:
        identity = streamed_request_identity(req, body, session, conf)
        refusal = apple_channel.answer_too_large(
            session, identity, body.uuids, body.size, limit, source_ip=client_ip()
        )
    except BodyTooLarge as exc:
        log.warning("answer from %s refused unread: %s", req.remote_addr, exc)
        return plain(413, str(exc))
    except (Unauthenticated, apple_channel.DeviceIdentityError, apple_channel.IdentityRefused) as exc:
        # Nothing is trusted of a body we cannot authenticate: no command or device is touched.
        log.warning("oversized answer from %s not authenticated: %s", req.remote_addr, exc)
        return plain(413, f"body larger than {limit} bytes")
    session.commit()
    log.warning(
        "device %s answered %s with %d bytes (limit %d): %s",
        refusal.device_id,
        refusal.command_uuid or "no command in flight",
        body.size,
        limit,
        "command failed" if refusal.command_uuid is not None else "alert raised",
    )
    return plain(413, f"body of {body.size} bytes exceeds the limit of {limit} bytes")
