"""PUT /mdm/connect: the device reports a result (or Idle) and gets its next command."""

from __future__ import annotations

from flask import Blueprint, Response, request

from mdm.doors.appctx import client_ip, command_context, db_session, settings
from mdm.doors.apple.answers import oversized_answer
from mdm.doors.apple.auth import request_identity
from mdm.doors.apple.plist_codec import decode_message, encode_command
from mdm.doors.apple.refusals import REFUSALS, refused
from mdm.doors.bodies import OversizedBody, read_answer
from mdm.services import apple_channel

bp = Blueprint("apple_connect", __name__)


@bp.route("/mdm/connect", methods=["PUT", "POST"])
def connect() -> Response:
    conf = settings()
    session = db_session()
    try:
        body = read_answer(request, conf.max_command_answer_bytes, conf.max_command_answer_read_bytes)
        if isinstance(body, OversizedBody):
            return oversized_answer(session, body, conf)
        identity = request_identity(request, body, session, conf)
        report = decode_message(body, conf.max_command_answer_bytes)
        command = apple_channel.connect(
            session,
            identity,
            report,
            body,
            source_ip=client_ip(),
            secret_key=conf.secret_key,
            context=command_context(),
        )
        payload = b"" if command is None else encode_command(command.uuid, command.request_type, command.keys)
    except REFUSALS as exc:
        return refused(exc, "connect", __name__)
    # The report and the delivery are recorded before the device hears anything.
    session.commit()
    if not payload:
        return Response(b"", status=200)
    return Response(payload, status=200, content_type="application/xml; charset=utf-8")
