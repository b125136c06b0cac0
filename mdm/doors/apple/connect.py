"""PUT /mdm/connect: the device reports a result (or Idle) and gets its next command."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from commands import results
from commands.catalog import DeliveryContext, get_command_type
from commands.delivery import next_command
from mdm.doors.appctx import client_ip, db_session, settings
from mdm.doors.apple.answers import oversized_answer
from mdm.doors.apple.auth import Unauthenticated, request_identity
from mdm.doors.apple.plist_codec import PlistError, decode_message, encode_command
from mdm.doors.bodies import BodyTooLarge, OversizedBody, plain, read_answer
from mdm.services import devices

log = logging.getLogger(__name__)
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
        # A user channel's Idle must never be handed the device channel's queue.
        devices.refuse_user_channel(report)
        udid = devices.require_string(report, "UDID", 128)
        status = report.get("Status")
        if status not in results.REPORT_STATUSES:
            return plain(400, f"Status {status!r} is not a known report status")
        device = devices.identify_device(session, identity, udid)
        devices.touch(device)
        actor = devices.device_actor(udid, client_ip())
        if status != "Idle":
            results.record_result(session, device, report, body, actor=actor, identity=identity.fingerprint)
        command = next_command(session, device, offer_not_now=status == "Idle", actor=actor)
        payload = b""
        if command is not None:
            apple_keys = get_command_type(command.request_type).apple_command(
                dict(command.params), DeliveryContext(device, conf.secret_key)
            )
            payload = encode_command(command.uuid, command.request_type, apple_keys)
        session.commit()
    except BodyTooLarge as exc:
        return plain(413, str(exc))
    except (Unauthenticated, devices.DeviceIdentityError) as exc:
        log.warning("connect refused from %s: %s", request.remote_addr, exc)
        return plain(401, "device authentication failed")
    except devices.UserChannelRefused as exc:
        return plain(410, str(exc))
    except devices.IdentityRefused as exc:
        log.warning("connect refused from %s: %s", request.remote_addr, exc)
        return plain(403, f"identity refused: {exc}")
    except (PlistError, devices.CheckinMessageError) as exc:
        return plain(400, str(exc))
    if not payload:
        return Response(b"", status=200)
    return Response(payload, status=200, content_type="application/xml; charset=utf-8")
