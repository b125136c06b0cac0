"""Every /api/v1 endpoint × every role (+ no token, expired, revoked, scoped outside its subtree).

The table below is the specification. It is compared with the application's URL map, so an
endpoint added without a row here fails `test_every_endpoint_has_a_rule`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from commands.queue import enqueue_command
from enrollment.tokens import create_token
from mdm.ground.audit import SYSTEM
from mdm.ground.models import AmapiEnrollmentToken, Command
from mdm.services.alerts.service import raise_alert
from mdm.services.amapi.client_factory import amapi_client_for
from mdm.services.amapi.credential import store_credential
from mdm.services.amapi.enterprise import enterprise_row, start_signup
from mdm.services.amapi.mode import set_android_mode
from mdm.services.apps import catalog
from mdm.services.apps import rules as app_rules
from mdm.services.continuity import mark_spare
from profiles.assignment import assign_profile
from profiles.service import create_profile
from tests.apps.packages import build_ipa
from tests.hotline.support import rbac_bodies, rbac_incidents
from tests.support.amapi_sim import AmapiSimulator, amapi_sim  # noqa: F401 (fixture)
from tests.support.factories import make_device
from tests.web.helpers import bearer, make_token, make_user
from web.rbac import ROLE_PERMISSIONS, Permission, Role

ADMIN = {"admin"}
EVERYONE = {"admin", "operator", "approver", "auditor", "dispatch"}
READERS = {"admin", "operator", "approver", "auditor", "dispatch"}
COMMAND_READERS = {"admin", "operator", "approver", "auditor"}
AUDITORS = {"admin", "auditor"}
ALERT_READERS = {"admin", "operator", "auditor"}
INCIDENT_READERS = {"admin", "operator", "approver", "auditor"}
PROFILE_READERS = {"admin", "auditor"}
READINESS_READERS = {"admin", "operator", "auditor", "dispatch"}

# (method, rule) -> roles that may call it. None: public (no token needed).
EXPECTED: dict[tuple[str, str], set[str] | None] = {
    ("GET", "/api/v1/openapi.json"): None,
    ("GET", "/api/v1/me"): EVERYONE,
    ("GET", "/api/v1/devices"): READERS,
    ("GET", "/api/v1/devices/{device_id}"): READERS,
    ("PATCH", "/api/v1/devices/{device_id}"): ADMIN,
    ("POST", "/api/v1/devices/{device_id}/reenroll-allowance"): ADMIN,
    ("POST", "/api/v1/devices/{device_id}/out-of-service"): ADMIN,
    ("GET", "/api/v1/devices/{device_id}/commands"): COMMAND_READERS,
    ("GET", "/api/v1/devices/{device_id}/foreign-results"): COMMAND_READERS,
    ("POST", "/api/v1/devices/{device_id}/commands"): {"admin", "operator"},
    ("GET", "/api/v1/commands"): COMMAND_READERS,
    ("GET", "/api/v1/commands/{command_uuid}"): COMMAND_READERS,
    ("POST", "/api/v1/commands/{command_uuid}/cancel"): {"admin", "operator"},
    ("GET", "/api/v1/command-types"): COMMAND_READERS,
    ("GET", "/api/v1/org-units"): READERS,
    ("POST", "/api/v1/org-units"): ADMIN,
    ("GET", "/api/v1/org-units/{unit_id}"): READERS,
    ("PATCH", "/api/v1/org-units/{unit_id}"): ADMIN,
    ("PUT", "/api/v1/org-units/{unit_id}/android-location-reporting"): ADMIN,
    ("GET", "/api/v1/enrollment-tokens"): AUDITORS,
    ("POST", "/api/v1/enrollment-tokens"): ADMIN,
    ("GET", "/api/v1/enrollment-tokens/{enrollment_token_id}"): AUDITORS,
    ("POST", "/api/v1/enrollment-tokens/{enrollment_token_id}/revoke"): ADMIN,
    ("GET", "/api/v1/users"): AUDITORS,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users/{user_id}"): AUDITORS,
    ("PATCH", "/api/v1/users/{user_id}"): ADMIN,
    ("POST", "/api/v1/users/{user_id}/password-reset"): ADMIN,
    ("POST", "/api/v1/users/{user_id}/totp-reset"): ADMIN,
    ("POST", "/api/v1/users/{user_id}/unlock"): ADMIN,
    ("GET", "/api/v1/webhooks"): AUDITORS,
    ("GET", "/api/v1/vpp"): AUDITORS,
    ("GET", "/api/v1/app-catalog"): AUDITORS,
    ("POST", "/api/v1/app-catalog/store"): ADMIN,
    ("POST", "/api/v1/app-catalog/packages"): ADMIN,
    ("PUT", "/api/v1/app-catalog/{app_id}/version"): ADMIN,
    ("POST", "/api/v1/app-catalog/{app_id}/download-url"): ADMIN,
    ("DELETE", "/api/v1/app-catalog/{app_id}"): ADMIN,
    ("GET", "/api/v1/org-units/{unit_id}/apps"): AUDITORS,
    ("POST", "/api/v1/org-units/{unit_id}/apps"): ADMIN,
    ("DELETE", "/api/v1/org-units/{unit_id}/apps/{rule_id}"): ADMIN,
    ("PUT", "/api/v1/org-units/{unit_id}/app-block-action"): ADMIN,
    ("GET", "/api/v1/devices/{device_id}/app-state"): AUDITORS,
    # Need a webhook (and a receiver for the test send): tests/security/test_webhook_ssrf.py
    # covers them, with an operator refused.
    ("POST", "/api/v1/webhooks"): None,
    ("POST", "/api/v1/webhooks/{webhook_id}/disable"): None,
    ("POST", "/api/v1/webhooks/{webhook_id}/enable"): None,
    ("POST", "/api/v1/webhooks/{webhook_id}/test"): None,
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): None,
    ("GET", "/api/v1/api-tokens"): AUDITORS,
    ("POST", "/api/v1/api-tokens"): ADMIN,
    ("GET", "/api/v1/api-tokens/{api_token_id}"): AUDITORS,
    ("DELETE", "/api/v1/api-tokens/{api_token_id}"): ADMIN,
    ("GET", "/api/v1/audit/events"): AUDITORS,
    ("GET", "/api/v1/audit/events/export"): AUDITORS,
    ("GET", "/api/v1/audit/verify"): AUDITORS,
    ("GET", "/api/v1/incidents"): INCIDENT_READERS,
    ("POST", "/api/v1/incidents"): {"admin", "operator"},
    ("GET", "/api/v1/incidents/{incident_id}"): INCIDENT_READERS,
    ("POST", "/api/v1/incidents/{incident_id}/lock"): {"admin", "operator"},
    ("POST", "/api/v1/incidents/{incident_id}/location-request"): {"admin", "operator"},
    ("POST", "/api/v1/incidents/{incident_id}/wipe-request"): {"admin", "operator"},
    ("POST", "/api/v1/incidents/{incident_id}/wipe-approval"): {"admin", "approver"},
    ("POST", "/api/v1/incidents/{incident_id}/wipe-rejection"): {"admin", "approver"},
    ("POST", "/api/v1/incidents/{incident_id}/break-glass"): ADMIN,
    ("POST", "/api/v1/incidents/{incident_id}/recover"): {"admin", "operator"},
    ("GET", "/api/v1/incidents/{incident_id}/certificate"): INCIDENT_READERS,
    ("GET", "/api/v1/incidents/{incident_id}/certificate/signature"): INCIDENT_READERS,
    ("GET", "/api/v1/incidents/{incident_id}/certificate/html"): INCIDENT_READERS,
    ("GET", "/api/v1/profiles"): PROFILE_READERS,
    ("POST", "/api/v1/profiles"): ADMIN,
    ("POST", "/api/v1/profiles/validate"): PROFILE_READERS,
    ("POST", "/api/v1/profiles/from-template"): ADMIN,
    ("GET", "/api/v1/profiles/{profile_id}"): PROFILE_READERS,
    ("PUT", "/api/v1/profiles/{profile_id}"): ADMIN,
    ("GET", "/api/v1/profiles/{profile_id}/preview"): PROFILE_READERS,
    ("GET", "/api/v1/profiles/{profile_id}/export"): ADMIN,
    ("GET", "/api/v1/profile-templates"): PROFILE_READERS,
    ("GET", "/api/v1/profiles/{profile_id}/assignments"): PROFILE_READERS,
    ("POST", "/api/v1/profiles/{profile_id}/assignments"): ADMIN,
    ("DELETE", "/api/v1/profiles/{profile_id}/assignments/{unit_id}"): ADMIN,
    ("GET", "/api/v1/devices/{device_id}/profiles"): PROFILE_READERS,
    ("GET", "/api/v1/devices/{device_id}/facts"): READERS,
    ("GET", "/api/v1/devices/{device_id}/apps"): READERS,
    ("GET", "/api/v1/devices/{device_id}/installed-profiles"): READERS,
    ("GET", "/api/v1/devices/{device_id}/certificates"): READERS,
    ("GET", "/api/v1/devices/{device_id}/history"): READERS,
    ("GET", "/api/v1/devices/{device_id}/findings"): READERS,
    ("POST", "/api/v1/devices/{device_id}/inventory/refresh"): ADMIN,
    ("GET", "/api/v1/apps"): READERS,
    ("GET", "/api/v1/alerts"): ALERT_READERS,
    ("GET", "/api/v1/alerts/{alert_id}"): ALERT_READERS,
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): ADMIN,
    ("GET", "/api/v1/readiness"): READINESS_READERS,
    ("GET", "/api/v1/readiness/events"): READINESS_READERS,
    ("GET", "/api/v1/readiness/stream"): READINESS_READERS,
    ("GET", "/api/v1/readiness/spares"): READINESS_READERS,
    ("GET", "/api/v1/readiness/units/{unit_id}/missing"): READINESS_READERS,
    ("PUT", "/api/v1/readiness/spares/{spare_device_id}"): ADMIN,
    ("POST", "/api/v1/readiness/spare-swap"): {"admin", "operator"},
    ("GET", "/api/v1/org-units/{unit_id}/continuity-plan"): READINESS_READERS,
    ("PUT", "/api/v1/org-units/{unit_id}/continuity-plan"): ADMIN,
    ("GET", "/api/v1/org-units/{unit_id}/incident-policy"): INCIDENT_READERS,
    ("PUT", "/api/v1/org-units/{unit_id}/incident-policy"): ADMIN,
    ("GET", "/api/v1/org-units/{unit_id}/compliance-policy"): INCIDENT_READERS,
    ("PUT", "/api/v1/org-units/{unit_id}/compliance-policy"): ADMIN,
    ("GET", "/api/v1/compliance-policy/default"): INCIDENT_READERS,
    ("PUT", "/api/v1/compliance-policy/default"): ADMIN,
    ("GET", "/api/v1/org-units/{unit_id}/os-update-policy"): READERS,
    ("PUT", "/api/v1/org-units/{unit_id}/os-update-policy"): ADMIN,
    ("GET", "/api/v1/os-update-policy/default"): READERS,
    ("PUT", "/api/v1/os-update-policy/default"): ADMIN,
    ("GET", "/api/v1/os-updates/devices"): READERS,
    ("GET", "/api/v1/devices/{device_id}/os-update"): READERS,
    ("GET", "/api/v1/amapi/enterprise"): AUDITORS,
    ("POST", "/api/v1/amapi/signup/complete"): ADMIN,
    ("POST", "/api/v1/amapi/credential"): ADMIN,
    ("POST", "/api/v1/amapi/signup"): ADMIN,
    ("PUT", "/api/v1/amapi/notifications"): ADMIN,
    ("PUT", "/api/v1/org-units/{unit_id}/android-mode"): ADMIN,
    ("GET", "/api/v1/org-units/{unit_id}/amapi-enrollment-tokens"): AUDITORS,
    ("POST", "/api/v1/org-units/{unit_id}/amapi-enrollment-tokens"): ADMIN,
    ("DELETE", "/api/v1/org-units/{unit_id}/amapi-enrollment-tokens/{amapi_token_id}"): ADMIN,
}
ROLES = sorted(EVERYONE)
PROFILE_SPEC = {
    "identifier": "jp.example.fd.rbac",
    "name_ja": "権限確認",
    "name_en": "RBAC check",
    "payloads": [{"kind": "passcode", "settings": {"min_length": 6}}],
}


def _normalize(app: Any, rule: Any) -> str:
    """Flask's `/tokens/<public_id:token_id>` as `/tokens/{api_token_id}`, telling id kinds apart."""
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
    if rule.endpoint.startswith("api_tokens."):
        path = path.replace("{token_id}", "{api_token_id}")
    if rule.endpoint.startswith("enrollment_tokens."):
        path = path.replace("{token_id}", "{enrollment_token_id}")
    return path


def api_routes(app: Any) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method, _normalize(app, rule)))
    return routes


def test_every_endpoint_has_a_rule(app: Any) -> None:
    routes = api_routes(app)
    assert routes - set(EXPECTED) == set(), "new endpoints need a row in EXPECTED"
    assert set(EXPECTED) - routes == set(), "EXPECTED lists endpoints that no longer exist"


@dataclass
class World:
    tokens: dict[str, str]
    paths: dict[str, str]
    bodies: dict[tuple[str, str], dict[str, Any]]
    # Path values for one endpoint only (a hotline action needs an incident in its own state).
    overrides: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    # Endpoints that take a raw body and a query string (an app package upload) instead of JSON.
    uploads: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)


@pytest.fixture
def settings(settings: Any, amapi_sim: AmapiSimulator) -> Any:  # noqa: F811
    """The Android Management API endpoints talk to the simulator."""
    return replace(settings, amapi_url=amapi_sim.api_url, pubsub_url=amapi_sim.pubsub_url)


def _amapi_world(session: Any, settings: Any, sim: AmapiSimulator, unit: Any) -> tuple[str, int]:
    """A stored service account with a signup under way (its enterprise token for the body of
    /amapi/signup/complete), the unit in AMAPI mode, and a token row to revoke."""
    store_credential(session, settings, json.dumps(sim.service_account_info()).encode(), actor=SYSTEM)
    with amapi_client_for(session, settings) as client:
        start_signup(session, client, callback_url="https://mdm.test.invalid/cb", actor=SYSTEM)
    enterprise_token = sim.complete_signup(enterprise_row(session).signup_url_name)
    set_android_mode(session, unit, "amapi", actor=SYSTEM)
    doomed = AmapiEnrollmentToken(
        org_unit_id=unit.id,
        token_name="enterprises/LCgone/enrollmentTokens/gone",
        policy_name="enterprises/LCgone/policies/unit",
        value_sealed=b"-",
        qr_code_sealed=b"-",
        created_by="system",
    )
    session.add(doomed)
    session.flush()
    return enterprise_token, doomed.id


@pytest.fixture
def world(app: Any, tree: Any, session_factory: Any, settings: Any, amapi_sim: AmapiSimulator) -> World:  # noqa: F811
    with session_factory() as session:
        tokens = {role: make_token(session, role) for role in ROLES}
        target_token = make_token(session, "dispatch", name="target")
        target_user = make_user(session, settings, "target", "operator", org_unit_id=tree.station_a.id)
        device_a = session.merge(tree.device_a)
        command = enqueue_command(session, device_a, "DeviceLock", {}, actor=SYSTEM, push=False)
        alert = raise_alert(session, "test.rbac", "warning", "RBAC check", device=device_a)
        enrollment = create_token(
            session, {"org_unit_id": tree.unit_a1.id, "expires_in": timedelta(days=7)}, actor=SYSTEM
        )
        incident_id, overrides = rbac_incidents(session, device_a)
        android = make_device(session)
        android.platform, android.org_unit_id = "android", tree.unit_a1.id
        overrides[("POST", "/api/v1/devices/{device_id}/out-of-service")] = {"device_id": str(android.id)}
        profile = create_profile(session, SYSTEM, PROFILE_SPEC)
        assign_profile(session, settings, profile, session.merge(tree.unit_a1), actor=SYSTEM)
        mark_spare(session, session.merge(tree.device_b), actor=SYSTEM)  # device B is at station B
        store_app = catalog.add_store_app(
            session,
            {"itunes_store_id": 1455211111, "identifier": "jp.example.fd.rbac", "name": "RBAC"},
            actor=SYSTEM,
        )
        doomed_app = catalog.add_store_app(
            session,
            {"itunes_store_id": 1455211112, "identifier": "jp.example.fd.gone", "name": "Gone"},
            actor=SYSTEM,
        )
        ipa_app = catalog.upload_package(
            session, "enterprise", "field.ipa", build_ipa("jp.example.fd.ipa"), actor=SYSTEM
        )
        rule = app_rules.require_app(session, session.merge(tree.unit_a1), store_app, actor=SYSTEM)
        enterprise_token, amapi_token_id = _amapi_world(
            session, settings, amapi_sim, session.merge(tree.unit_a1)
        )
        overrides[("DELETE", "/api/v1/app-catalog/{app_id}")] = {"app_id": str(doomed_app.id)}
        overrides[("POST", "/api/v1/app-catalog/{app_id}/download-url")] = {"app_id": str(ipa_app.id)}
        session.commit()
        paths = {
            "device_id": str(tree.device_a.id),
            "alert_id": str(alert.id),
            "command_uuid": command.uuid,
            "unit_id": str(tree.unit_a1.id),
            "enrollment_token_id": str(enrollment.token.id),
            "user_id": str(target_user.user_id),
            "api_token_id": target_token.split("_")[1],
            "incident_id": incident_id,
            "profile_id": str(profile.id),
            "spare_device_id": str(tree.device_b.id),
            "app_id": str(store_app.id),
            "rule_id": str(rule.id),
            "amapi_token_id": str(amapi_token_id),
        }
    bodies = {
        ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): {"comment": "checked"},
        ("POST", "/api/v1/devices/{device_id}/commands"): {"request_type": "DeviceLock"},
        ("POST", "/api/v1/org-units"): {"kind": "unit", "name_ja": "新隊", "parent_id": tree.station_b.id},
        ("PATCH", "/api/v1/org-units/{unit_id}"): {"name_en": "Central Ambulance"},
        ("PUT", "/api/v1/org-units/{unit_id}/android-location-reporting"): {"location_reporting": True},
        ("PATCH", "/api/v1/devices/{device_id}"): {"asset_tag": "FD-RBAC", "assigned_user": "救急3隊"},
        ("POST", "/api/v1/devices/{device_id}/reenroll-allowance"): {"hours": 4},
        ("POST", "/api/v1/devices/{device_id}/out-of-service"): {"reason": "初期化済み・旧記録を停止"},
        ("PUT", "/api/v1/org-units/{unit_id}/incident-policy"): {"auto_wipe_after_hours": 24},
        ("PUT", "/api/v1/org-units/{unit_id}/compliance-policy"): {"minimum_os_version": "17.4"},
        ("PUT", "/api/v1/compliance-policy/default"): {"offline_limit_hours": 48},
        ("PUT", "/api/v1/org-units/{unit_id}/os-update-policy"): {"target": "17.6"},
        ("PUT", "/api/v1/os-update-policy/default"): {"android_mode": "automatic"},
        ("POST", "/api/v1/enrollment-tokens"): {"org_unit_id": tree.unit_a1.id},
        ("POST", "/api/v1/enrollment-tokens/{enrollment_token_id}/revoke"): {},
        ("POST", "/api/v1/users"): {"username": "newbie", "role": "auditor"},
        ("PATCH", "/api/v1/users/{user_id}"): {"display_name": "Target"},
        ("POST", "/api/v1/api-tokens"): {"name": "n", "role": "dispatch"},
        **rbac_bodies(tree.device_a.id),
        ("POST", "/api/v1/profiles"): {**PROFILE_SPEC, "identifier": "jp.example.fd.rbac-new"},
        ("POST", "/api/v1/profiles/validate"): PROFILE_SPEC,
        ("POST", "/api/v1/profiles/from-template"): {"template": "strict", "identifier": "jp.example.fd.s"},
        ("PUT", "/api/v1/profiles/{profile_id}"): {**PROFILE_SPEC, "name_en": "Renamed"},
        ("POST", "/api/v1/profiles/{profile_id}/assignments"): {"org_unit_id": tree.station_b.id},
        ("PUT", "/api/v1/readiness/spares/{spare_device_id}"): {"spare": False},
        ("POST", "/api/v1/readiness/spare-swap"): {
            "spare_device_id": tree.device_b.id,
            "unit_id": tree.unit_a1.id,
        },
        ("POST", "/api/v1/app-catalog/store"): {
            "itunes_store_id": 1455211113,
            "identifier": "jp.example.fd.added",
            "name": "Added",
        },
        ("PUT", "/api/v1/app-catalog/{app_id}/version"): {"version": "2.0"},
        ("POST", "/api/v1/org-units/{unit_id}/apps"): {
            "action": "blocked",
            "platform": "apple",
            "identifier": "com.example.game",
        },
        ("PUT", "/api/v1/org-units/{unit_id}/app-block-action"): {"block_action": "remove"},
        # Against the AMAPI simulator (the administrator's calls bind the enterprise in this order).
        ("POST", "/api/v1/amapi/signup/complete"): {"enterprise_token": enterprise_token},
        ("POST", "/api/v1/amapi/credential"): {"service_account": amapi_sim.service_account_info()},
        ("POST", "/api/v1/amapi/signup"): {},
        ("PUT", "/api/v1/amapi/notifications"): {
            "pubsub_topic": "projects/hikeshi-test/topics/amapi",
            "pubsub_subscription": "projects/hikeshi-test/subscriptions/hikeshi",
        },
        ("PUT", "/api/v1/org-units/{unit_id}/android-mode"): {"android_mode": "amapi"},
        ("POST", "/api/v1/org-units/{unit_id}/amapi-enrollment-tokens"): {"days": 7},
        ("PUT", "/api/v1/org-units/{unit_id}/continuity-plan"): {
            "required_working": 1,
            "max_seen_minutes": 60,
            "min_battery_percent": 20,
        },
    }
    uploads = {
        ("POST", "/api/v1/app-catalog/packages"): (
            "kind=enterprise&filename=other.ipa",
            build_ipa("jp.example.fd.other"),
        )
    }
    return World(tokens, paths, bodies, overrides, uploads)


def _call(client: Any, method: str, template: str, world: World, headers: dict[str, str]) -> Any:
    path = template.format(**{**world.paths, **world.overrides.get((method, template), {})})
    if (method, template) in world.uploads:
        query, data = world.uploads[(method, template)]
        return client.open(f"{path}?{query}", method=method, headers=headers, data=data)
    body = world.bodies.get((method, template))
    return client.open(path, method=method, headers=headers, json=body)


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(client: Any, world: World, role: str) -> None:
    """Allowed: anything but 401/403 (and never a 5xx); refused: 403 in the error shape."""
    for (method, template), allowed in sorted(EXPECTED.items()):
        if allowed is None:
            continue
        response = _call(client, method, template, world, bearer(world.tokens[role]))
        where = f"{role} {method} {template}: {response.status_code} {response.get_data()[:200]!r}"
        assert response.status_code < 500, where
        if role in allowed:
            assert response.status_code not in (401, 403), where
            assert response.status_code in (200, 201, 204), where
        else:
            assert response.status_code == 403, where
            assert response.get_json()["error"]["code"] == "forbidden", where


@pytest.mark.parametrize("problem", ["missing", "malformed", "unknown", "expired", "revoked"])
def test_every_endpoint_refuses_a_bad_token(
    client: Any, world: World, session_factory: Any, frozen_clock: Any, problem: str
) -> None:
    headers: dict[str, str] = {}
    if problem == "malformed":
        headers = {"Authorization": "Basic YWRtaW46YWRtaW4="}
    elif problem == "unknown":
        public_id = world.tokens["admin"].split("_")[1]
        headers = bearer(f"hks_{public_id}_not-the-secret")
    elif problem == "expired":
        with session_factory() as session:
            headers = bearer(make_token(session, "admin", days=0.5))
        frozen_clock.advance(days=1)
    elif problem == "revoked":
        headers = bearer(world.tokens["admin"])
        admin_id = world.tokens["admin"].split("_")[1]
        assert client.delete(f"/api/v1/api-tokens/{admin_id}", headers=headers).status_code == 200
    for (method, template), allowed in sorted(EXPECTED.items()):
        if allowed is None:
            continue
        response = _call(client, method, template, world, headers)
        assert response.status_code == 401, f"{problem} {method} {template}: {response.status_code}"
        assert response.get_json()["error"]["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_scoped_operator_sees_and_touches_nothing_outside_its_subtree(
    client: Any, tree: Any, session_factory: Any
) -> None:
    with session_factory() as session:
        scoped = bearer(make_token(session, "operator", org_unit_id=tree.station_a.id))
        device_b = session.merge(tree.device_b)
        foreign = enqueue_command(session, device_b, "DeviceInformation", {}, actor=SYSTEM, push=False)
        session.commit()
    listed = client.get("/api/v1/devices", headers=scoped).get_json()
    assert [d["id"] for d in listed["items"]] == [tree.device_a.id]  # not B, not the unassigned one
    assert (
        client.get(f"/api/v1/devices?unit_id={tree.station_b.id}", headers=scoped).get_json()["items"] == []
    )
    for path in (
        f"/api/v1/devices/{tree.device_b.id}",
        f"/api/v1/devices/{tree.device_loose.id}",
        f"/api/v1/devices/{tree.device_b.id}/commands",
        f"/api/v1/commands/{foreign.uuid}",
        f"/api/v1/org-units/{tree.station_b.id}",
        f"/api/v1/org-units/{tree.hq.id}",
    ):
        response = client.get(path, headers=scoped)
        assert response.status_code == 404, path
    lock = client.post(
        f"/api/v1/devices/{tree.device_b.id}/commands", headers=scoped, json={"request_type": "DeviceLock"}
    )
    assert lock.status_code == 404
    assert client.post(f"/api/v1/commands/{foreign.uuid}/cancel", headers=scoped).status_code == 404
    assert client.get("/api/v1/commands", headers=scoped).get_json()["items"] == []
    units = client.get("/api/v1/org-units", headers=scoped).get_json()
    assert {u["id"] for u in units} == {tree.station_a.id, tree.unit_a1.id}
    # Inside its subtree the operator does its job.
    own = client.post(
        f"/api/v1/devices/{tree.device_a.id}/commands", headers=scoped, json={"request_type": "DeviceLock"}
    )
    assert own.status_code == 201
    with session_factory() as session:
        untouched = session.scalars(select(Command).where(Command.device_id == tree.device_b.id)).all()
        assert [(c.uuid, c.status) for c in untouched] == [(foreign.uuid, "queued")]


def test_scoped_admin_cannot_reach_outside_either(
    client: Any, tree: Any, session_factory: Any, settings: Any
) -> None:
    with session_factory() as session:
        scoped = bearer(make_token(session, "admin", org_unit_id=tree.station_a.id))
        outsider = make_user(session, settings, "outsider", "auditor", org_unit_id=tree.station_b.id)
    assert client.get(f"/api/v1/users/{outsider.user_id}", headers=scoped).status_code == 404
    # Only the token's own owner (a scoped admin of station A) is visible.
    listed = [u for u in client.get("/api/v1/users", headers=scoped).get_json()]
    assert [(u["username"][:6], u["org_unit_id"]) for u in listed] == [("owner-", tree.station_a.id)]
    unscoped = client.post("/api/v1/users", headers=scoped, json={"username": "global", "role": "admin"})
    assert unscoped.status_code == 400 and "org_unit_id" in unscoped.get_json()["error"]["fields"]
    elsewhere = client.post(
        "/api/v1/users",
        headers=scoped,
        json={"username": "north", "role": "operator", "org_unit_id": tree.station_b.id},
    )
    assert elsewhere.status_code == 400
    inside = client.post(
        "/api/v1/users",
        headers=scoped,
        json={"username": "central", "role": "operator", "org_unit_id": tree.unit_a1.id},
    )
    assert inside.status_code == 201
    root = client.post("/api/v1/org-units", headers=scoped, json={"kind": "hq", "name_ja": "別本部"})
    assert root.status_code == 400
    move_out = client.patch(
        f"/api/v1/org-units/{tree.unit_a1.id}", headers=scoped, json={"parent_id": tree.station_b.id}
    )
    assert move_out.status_code == 400
    token = client.post("/api/v1/enrollment-tokens", headers=scoped, json={"org_unit_id": tree.station_b.id})
    assert token.status_code == 400


def test_operator_cannot_approve_wipes_create_users_or_erase(
    client: Any, tree: Any, session_factory: Any
) -> None:
    # The wipe approval endpoint arrives with the hotline; its permission exists already.
    holders = {role.value for role, granted in ROLE_PERMISSIONS.items() if Permission.WIPE_APPROVE in granted}
    assert holders == {"admin", "approver"}
    assert Permission.WIPE_REQUEST in ROLE_PERMISSIONS[Role.OPERATOR]
    with session_factory() as session:
        operator = bearer(make_token(session, "operator"))
        admin = bearer(make_token(session, "admin"))
    assert (
        client.post("/api/v1/users", headers=operator, json={"username": "x", "role": "admin"}).status_code
        == 403
    )
    erase = client.post(
        f"/api/v1/devices/{tree.device_a.id}/commands", headers=operator, json={"request_type": "EraseDevice"}
    )
    assert erase.status_code == 403
    restart = {"request_type": "RestartDevice"}
    assert (
        client.post(
            f"/api/v1/devices/{tree.device_a.id}/commands", headers=operator, json=restart
        ).status_code
        == 403
    )
    assert (
        client.post(f"/api/v1/devices/{tree.device_a.id}/commands", headers=admin, json=restart).status_code
        == 201
    )
