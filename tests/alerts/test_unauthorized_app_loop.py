"""End to end over HTTP: a simulated iPad in a unit whose profile blocks an app reports that app
in InstalledApplicationList → a finding and an alert → a real webhook receiver on loopback gets a
correctly signed JSON naming the app; the app removed, the finding closes itself."""

from __future__ import annotations

import hashlib
import hmac
import json
import plistlib

from sqlalchemy import select

from commands.inventory_refresh import queue_inventory_refresh
from mdm.ground.db import transaction
from mdm.ground.models import Alert, ComplianceFinding, Device, OrgUnit, Severity
from mdm.roots.scheduler.jobs import JobContext, webhook_delivery
from mdm.services.alerts.signing import SIGNATURE_HEADER
from mdm.services.alerts.webhooks import create_webhook
from mdm.services.compliance.evaluation import device_compliance, open_findings
from profiles.assignment import assign_profile
from profiles.service import create_profile
from profiles.spec import profile_uuid
from tests.alerts.receiver import webhook_receiver
from tests.inventory.helpers import ADMIN

BLOCKED = "com.example.fungame"
SPEC = {
    "identifier": "jp.fire.test.apps",
    "name_ja": "アプリ制限",
    "name_en": "App rules",
    "description": "",
    "payloads": [
        {"kind": "restrictions", "settings": {"app_block_list": [{"name": "Fun Game", "bundle_id": BLOCKED}]}}
    ],
}


def _app_list(*identifiers: str) -> list[dict]:
    return [
        {
            "Identifier": i,
            "Name": i.rsplit(".", 1)[-1],
            "ShortVersion": "1.0",
            "Version": "100",
            "BundleSize": 1,
        }
        for i in identifiers
    ]


def _drain(client, ipad, installed: list[dict], profiles: list[dict]) -> list[str]:
    """Answer every queued command as the iPad would (it has the assigned profile installed);
    returns the request types seen."""
    answers = {
        "DeviceInformation": {"QueryResponses": ipad.device_information()},
        "SecurityInfo": {
            "SecurityInfo": {
                "PasscodePresent": True,
                "PasscodeCompliant": True,
                "PasscodeCompliantWithProfiles": True,
            }
        },
        "InstalledApplicationList": {"InstalledApplicationList": installed},
        "ProfileList": {"ProfileList": profiles},
        "CertificateList": {"CertificateList": []},
    }
    seen = []
    response = ipad.connect(client, ipad.idle_body())
    while response.data:
        command = plistlib.loads(response.data)
        kind = command["Command"]["RequestType"]
        seen.append(kind)
        response = ipad.connect(client, ipad.result_body(command["CommandUUID"], **answers.get(kind, {})))
        assert response.status_code == 200
    return seen


def test_unauthorized_app_alert_webhook_and_self_closing_finding(app, client, ipad, session):
    hikeshi = app.extensions["hikeshi"]
    factory, settings = hikeshi.session_factory, hikeshi.settings
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    with webhook_receiver() as receiver:
        with transaction(factory) as s:
            unit = OrgUnit(kind="unit", name_ja="救急1隊", name_en="Ambulance 1")
            s.add(unit)
            s.flush()
            device = s.scalars(select(Device)).one()
            device.org_unit_id = unit.id
            profile = create_profile(s, ADMIN, SPEC)
            assign_profile(s, settings, profile, unit, actor=ADMIN)
            _, secret = create_webhook(
                s,
                ADMIN,
                "dispatch-center",
                receiver.url,
                secret_key=settings.secret_key,
                allow_networks=settings.webhook_allow_networks,
            )
            device_id = device.id
            installed_profiles = [
                {
                    "PayloadIdentifier": profile.identifier,
                    "PayloadUUID": profile_uuid(profile.identifier, profile.version),
                    "PayloadDisplayName": profile.name_ja,
                    "IsManaged": True,
                }
            ]

        seen = _drain(client, ipad, _app_list("jp.fire.triage", BLOCKED), installed_profiles)
        assert {"DeviceInformation", "InstalledApplicationList", "InstallProfile"} <= set(seen)
        session.expire_all()
        [finding] = open_findings(session, device_id)
        assert (finding.rule, finding.subject) == ("unauthorized_app", BLOCKED)
        assert device_compliance(session, device_id) == Severity.CRITICAL
        [alert] = session.scalars(select(Alert)).all()
        assert BLOCKED in alert.title and alert.org_unit_id is not None

        assert webhook_delivery(JobContext(factory, settings, "test")) == {"attempted": 1, "delivered": 1}
        # The receiver may also hear other events (unit readiness): take the alerts.
        [request] = [r for r in receiver.requests if "alert_id" in json.loads(r.body)]
        timestamp = request.headers[SIGNATURE_HEADER].split(",")[0].removeprefix("t=")
        mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers[SIGNATURE_HEADER], f"t={timestamp},v1={mac}")
        payload = json.loads(request.body)
        assert payload["kind"] == "compliance.unauthorized_app"
        assert payload["details"]["identifier"] == BLOCKED and payload["details"]["reason"] == "blocked"
        assert payload["device"]["udid"] == ipad.udid

        # The user deletes the game; the next inventory shows it gone and the finding closes.
        with transaction(factory) as s:
            queue_inventory_refresh(s, s.get(Device, device_id), ADMIN, kinds=["InstalledApplicationList"])
        assert _drain(client, ipad, _app_list("jp.fire.triage"), installed_profiles) == [
            "InstalledApplicationList"
        ]
        session.rollback()
        session.expire_all()
        assert open_findings(session, device_id) == []
        assert session.get(ComplianceFinding, finding.id).closed_at is not None
        assert device_compliance(session, device_id) == Severity.OK
        assert webhook_delivery(JobContext(factory, settings, "test"))["attempted"] == 0
