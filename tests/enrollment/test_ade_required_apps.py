# ruff: noqa: F811  (the ADE end-to-end module's fixtures are imported by name and requested by name)
"""ADE and apps (issue 20's leftover, issue 21): while Setup Assistant waits (TokenUpdate with
AwaitingConfiguration), the unit's required apps are queued with its profiles, and DeviceConfigured
comes only after the device answered every install."""

from __future__ import annotations

import plistlib
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.config import Settings
from mdm.services.apps import catalog, rules
from tests.apps.packages import build_ipa
from tests.enrollment.helpers import challenge_of, profile_dict
from tests.enrollment.test_ade_end_to_end import (  # noqa: F401  (its fixtures)
    ADMIN,
    SERIAL,
    _placeholder,
    _setup_abm,
    abm,
    apple_ca,
    enroll_settings,
)
from tests.support import pki
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import ScepClient


def test_setup_assistant_waits_for_the_units_required_apps(
    enroll_client: Any,
    session: Session,
    enroll_settings: Settings,
    abm: Any,
    tree: Any,
    push_topic: str,
    apple_ca: dict[str, Any],
    tmp_path: Any,
) -> None:
    _setup_abm(session, enroll_settings, abm, tree, tmp_path)
    ems = catalog.upload_package(
        session, "enterprise", "ems.ipa", build_ipa("jp.fire.ems.records"), actor=ADMIN
    )
    rules.require_app(session, tree.ambulance, ems, actor=ADMIN)
    session.commit()
    cert, key = pki.issue_cert(*_placeholder(), "placeholder")
    ipad = SimulatedIPad(cert, key, serial=SERIAL, topic=push_topic)
    response = ipad.post_machine_info(
        enroll_client, ipad.machine_info_body(*apple_ca["device"], chain=apple_ca["chain"])
    )
    assert response.status_code == 200
    enrollment = ScepClient(enroll_client).enroll(challenge_of(profile_dict(response.data)))
    ipad.take_identity(enrollment.reply.certificate, enrollment.key)
    assert ipad.checkin(enroll_client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(enroll_client, ipad.token_update_body(awaiting_configuration=True)).status_code == 200
    seen: list[str] = []
    response = ipad.connect(enroll_client, ipad.idle_body())
    for _ in range(30):
        if response.status_code != 200 or not response.data:
            break
        message = plistlib.loads(response.data)
        seen.append(message["Command"]["RequestType"])
        extra = (
            {"Identifier": "jp.fire.ems.records", "State": "Installing"}
            if seen[-1] == "InstallApplication"
            else {}
        )
        response = ipad.connect(enroll_client, ipad.result_body(message["CommandUUID"], **extra))
    assert "InstallApplication" in seen and "DeviceConfigured" in seen, seen
    assert seen.index("DeviceConfigured") > seen.index("InstallApplication")
    assert seen.index("DeviceConfigured") > max(i for i, t in enumerate(seen) if t == "InstallProfile")
