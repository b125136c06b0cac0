"""PUT /mdm/checkin: Authenticate, TokenUpdate, CheckOut, DeclarativeManagement (user channels and
UserAuthenticate declined)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from mdm.doors.appctx import client_ip, db_session, settings
from mdm.doors.apple.auth import request_identity
from mdm.doors.apple.plist_codec import decode_message
from mdm.doors.apple.refusals import REFUSALS, refused
from mdm.doors.bodies import read_body
from mdm.services import apple_channel

bp = Blueprint("apple_checkin", __name__)


@bp.route("/mdm/checkin", methods=["PUT", "POST"])
def checkin() -> Response:
    conf = settings()
    session = db_session()
    try:
        body = read_body(request, conf.max_device_body_bytes)
        identity = request_identity(request, body, session, conf)
        message = decode_message(body, conf.max_device_body_bytes)
        answer = apple_channel.checkin(
            session, identity, message, body, source_ip=client_ip(), secret_key=conf.secret_key
        )
    except apple_channel.IdentityConflict as exc:
        # The Authenticate was rolled back; the service recorded the refusal (audit, alert).
        session.commit()
        return refused(exc, "check-in", __name__)
    except REFUSALS as exc:
        return refused(exc, "check-in", __name__)
    session.commit()
    if answer is None:
        return Response(b"", status=200)
    # A DeclarativeManagement answer: JSON (empty for a status report).
    return Response(answer, status=200, mimetype="application/json" if answer else None)
