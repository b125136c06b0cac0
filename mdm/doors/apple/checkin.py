"""PUT /mdm/checkin: Authenticate, TokenUpdate, CheckOut (user channels and UserAuthenticate declined)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from mdm.doors.appctx import client_ip, db_session, settings
from mdm.doors.apple.auth import Unauthenticated, request_identity
from mdm.doors.apple.plist_codec import PlistError, decode_message
from mdm.doors.bodies import BodyTooLarge, plain, read_body
from mdm.services import devices

log = logging.getLogger(__name__)
bp = Blueprint("apple_checkin", __name__)


@bp.route("/mdm/checkin", methods=["PUT", "POST"])
def checkin() -> Response:
    conf = settings()
    session = db_session()
    try:
        body = read_body(request, conf.max_device_body_bytes)
        identity = request_identity(request, body, session, conf)
        message = decode_message(body, conf.max_device_body_bytes)
        message_type = message.get("MessageType")
        ip = client_ip()
        if message_type == "UserAuthenticate":
            # Hikeshi manages shared field tablets on the device channel only; 410 tells the
            # device the user channel is declined, as the protocol allows.
            return plain(410, "user channel not supported")
        devices.refuse_user_channel(message)
        if message_type == "Authenticate":
            devices.authenticate(session, identity, message, body, ip)
        elif message_type in ("TokenUpdate", "CheckOut"):
            udid = devices.require_string(message, "UDID", 128)
            device = devices.identify_device(session, identity, udid)
            if message_type == "TokenUpdate":
                devices.token_update(session, device, message, body, ip, secret_key=conf.secret_key)
            else:
                devices.check_out(session, device, body, ip)
        else:
            return plain(400, f"MessageType {message_type!r} is not supported")
        session.commit()
    except BodyTooLarge as exc:
        return plain(413, str(exc))
    except (Unauthenticated, devices.DeviceIdentityError) as exc:
        log.warning("check-in refused from %s: %s", request.remote_addr, exc)
        return plain(401, "device authentication failed")
    except devices.UserChannelRefused as exc:
        return plain(410, str(exc))
    except devices.IdentityConflict as exc:
        session.rollback()
        log.warning("identity conflict from %s for %s: %s", request.remote_addr, exc.udid, exc.reason)
        devices.record_identity_conflict(session, exc, client_ip())
        session.commit()
        return plain(403, f"identity conflict: {exc.reason}")
    except devices.IdentityRefused as exc:
        log.warning("check-in refused from %s: %s", request.remote_addr, exc)
        return plain(403, f"identity refused: {exc}")
    except PlistError as exc:
        return plain(400, str(exc))
    except devices.CheckinMessageError as exc:
        return plain(400, str(exc))
    return Response(b"", status=200)
