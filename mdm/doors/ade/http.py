"""The enrollment door of ADE devices: POST /ade/enroll, the `url` of every ADE profile.

Thin: read the body (the device's CMS-signed machine info), one service call
(mdm.services.ade.enrollment.profile_for_machine_info), answer the signed enrollment profile.
Every refusal is plain text with its reason; nothing is written for a refused request.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from enrollment.profile import CONTENT_TYPE, NoPushTopic
from mdm.doors.appctx import client_ip, db_session, settings
from mdm.doors.bodies import BodyTooLarge, plain, read_body
from mdm.ground.ca import CANotReady
from mdm.services.ade.enrollment import NotAnAdeDevice, profile_for_machine_info
from mdm.services.ade.machine_info import MAX_MACHINE_INFO_BYTES, DeviceCANotConfigured, MachineInfoRefused
from mdm.services.ade.profiles import ENROLL_PATH

log = logging.getLogger(__name__)
bp = Blueprint("ade_enroll", __name__)


@bp.post(ENROLL_PATH)
def enroll() -> Response:
    session = db_session()
    try:
        body = read_body(request, MAX_MACHINE_INFO_BYTES)
        rendered = profile_for_machine_info(session, settings(), body, source_ip=client_ip())
        session.commit()
    except BodyTooLarge as exc:
        return plain(413, str(exc))
    except MachineInfoRefused as exc:
        session.rollback()
        log.warning("ADE enrollment refused from %s: %s", client_ip(), exc)
        return plain(400 if exc.bad_request else 401, str(exc))
    except NotAnAdeDevice as exc:
        session.rollback()
        log.warning("ADE enrollment refused: %s", exc)
        return plain(403, str(exc))
    except (DeviceCANotConfigured, NoPushTopic, CANotReady) as exc:
        session.rollback()
        log.error("ADE enrollment impossible: %s", exc)
        return plain(503, str(exc))
    response = Response(rendered.signed, status=200, content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
