"""AMAPI mode, core: binding → service account → unit in AMAPI mode → enrollment token + QR →
a tablet enrolls (the simulator's) → the unit's policy is applied; every request valid against the
discovery document (`amapi_sim.violations == []`). Also the client's OAuth2 refresh and retries,
the credential's checks, and what an attacker cannot do: bind or make tokens without the
permission, read the key back anywhere, land a device in another unit."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from mdm.ground.amapi_client import AmapiClient, AmapiError
from mdm.ground.audit import SYSTEM
from mdm.ground.models import AmapiEnrollmentToken, AmapiPolicy, AuditEvent, OrgUnit
from mdm.services.amapi.client_factory import amapi_client_for
from mdm.services.amapi.credential import CredentialError, read_service_account, store_credential
from mdm.services.amapi.enterprise import (
    complete_signup,
    enterprise_row,
    set_notifications,
    start_signup,
)
from mdm.services.amapi.mode import amapi_unit_ids, android_mode, set_android_mode
from mdm.services.amapi.policies import sync_amapi_policies
from mdm.services.amapi.tokens import create_token, qr_payload, unit_of_enrollment
from profiles.assignment import assign_profile
from profiles.service import create_profile
from tests.profiles.samples import spec_with, station_wifi
from tests.support.amapi_schema import schema_problems
from tests.support.amapi_sim import AmapiSimulator, amapi_sim  # noqa: F401 (fixture)
from tests.web.helpers import bearer, make_token

CALLBACK = "https://mdm.test.invalid/console/settings/amapi/callback"
TOPIC = "projects/hikeshi-test/topics/hikeshi-amapi"

UNIT_PROFILE = spec_with(
    {"kind": "passcode", "settings": {"min_length": 6, "require_alphanumeric": False, "allow_simple": False}},
    {
        "kind": "restrictions",
        "settings": {
            "allow_camera": False,
            "usb_data_access": "no_data",
            "app_block_list": [
                {"name": "Game", "bundle_id": "com.example.game", "package_name": "com.example.game"}
            ],
            "required_apps": [
                {
                    "name": "搬送支援",
                    "bundle_id": "jp.example.fd.hanso",
                    "package_name": "jp.example.fd.hanso",
                }
            ],
        },
    },
    {"kind": "wifi", "key": "station", "settings": station_wifi()},
    identifier="jp.example.fd.amapi",
)


@pytest.fixture
def settings(settings: Any, amapi_sim: AmapiSimulator) -> Any:  # noqa: F811
    return replace(settings, amapi_url=amapi_sim.api_url, pubsub_url=amapi_sim.pubsub_url)


@pytest.fixture
def units(app: Any, session_factory: Any) -> dict[str, int]:
    from mdm.services.orgunits import create_unit

    with session_factory() as session:
        hq = create_unit(session, {"kind": "hq", "name_ja": "火消し消防本部", "code": "HQ"}, actor=SYSTEM)
        station = create_unit(
            session,
            {"kind": "station", "name_ja": "中央消防署", "code": "ST", "parent_id": hq.id},
            actor=SYSTEM,
        )
        a1 = create_unit(
            session,
            {
                "kind": "unit",
                "unit_type": "ambulance",
                "name_ja": "中央救急隊",
                "code": "A1",
                "parent_id": station.id,
            },
            actor=SYSTEM,
        )
        p1 = create_unit(
            session,
            {
                "kind": "unit",
                "unit_type": "pump",
                "name_ja": "中央ポンプ隊",
                "code": "P1",
                "parent_id": station.id,
            },
            actor=SYSTEM,
        )
        session.commit()
        return {"hq": hq.id, "station": station.id, "a1": a1.id, "p1": p1.id}


def _bind(session: Any, settings: Any, sim: AmapiSimulator) -> None:
    store_credential(session, settings, json.dumps(sim.service_account_info()).encode(), actor=SYSTEM)
    with amapi_client_for(session, settings, sleep=lambda _s: None) as client:
        start_signup(session, client, callback_url=CALLBACK, actor=SYSTEM)
        row = enterprise_row(session)
        enterprise_token = sim.complete_signup(row.signup_url_name)
        complete_signup(
            session, client, enterprise_token=enterprise_token, display_name="火消し", actor=SYSTEM
        )
        subscription = sim.create_subscription(TOPIC)
        set_notifications(session, client, topic=TOPIC, subscription=subscription, actor=SYSTEM)
    session.commit()


# -- the client ---------------------------------------------------------------------------------


def test_client_signs_in_refreshes_once_on_401_and_waits_out_429(amapi_sim: AmapiSimulator) -> None:  # noqa: F811
    waits: list[float] = []
    client = AmapiClient(
        amapi_sim.service_account_info(),
        api_url=amapi_sim.api_url,
        pubsub_url=amapi_sim.pubsub_url,
        sleep=waits.append,
    )
    with client:
        first = client.call(
            "POST", "signupUrls", params={"projectId": "hikeshi-test", "callbackUrl": CALLBACK}
        )
        assert first["url"].startswith("http")
        amapi_sim.expire_tokens()  # revoked: one refresh, then the call goes through
        client.call("POST", "signupUrls", params={"projectId": "hikeshi-test", "callbackUrl": CALLBACK})
        amapi_sim.set_rate_limit(2, retry_after=3)
        client.call("POST", "signupUrls", params={"projectId": "hikeshi-test", "callbackUrl": CALLBACK})
        assert waits == [3, 3]
        with pytest.raises(AmapiError) as refused:
            client.call("GET", "enterprises/LCnobody")
        assert refused.value.status == 404 and refused.value.code == "NOT_FOUND"
    assert amapi_sim.violations == []


def test_a_token_endpoint_that_refuses_the_key_is_an_amapi_error_without_the_key(
    amapi_sim: AmapiSimulator,  # noqa: F811
) -> None:
    info = amapi_sim.service_account_info()
    stranger = read_service_account(json.dumps({**info, "client_email": "other@hikeshi-test.iam"}).encode())
    with AmapiClient(stranger, api_url=amapi_sim.api_url, pubsub_url=amapi_sim.pubsub_url) as client:
        with pytest.raises(AmapiError) as refused:
            client.call("POST", "signupUrls", params={"projectId": "hikeshi-test", "callbackUrl": CALLBACK})
    assert refused.value.status == 401
    assert "PRIVATE KEY" not in str(refused.value) and info["private_key"][40:80] not in str(refused.value)


# -- the credential -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "authorized_user"}, "service_account.type"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "private_key"),
        ({"client_email": None}, "client_email"),
        ({"token_uri": "file:///etc/passwd"}, "token_uri"),
    ],
)
def test_a_key_file_that_is_not_a_service_account_is_refused_naming_the_field(
    amapi_sim: AmapiSimulator,  # noqa: F811
    change: dict[str, Any],
    field: str,
) -> None:
    info = {k: v for k, v in {**amapi_sim.service_account_info(), **change}.items() if v is not None}
    with pytest.raises(CredentialError) as refused:
        read_service_account(json.dumps(info).encode())
    assert field in str(refused.value)
    assert "PRIVATE KEY-----\nM" not in str(refused.value)


# -- end to end ---------------------------------------------------------------------------------


def test_unit_in_amapi_mode_enrolls_a_tablet_from_its_qr_code_with_its_policy_applied(
    app: Any,
    session_factory: Any,
    settings: Any,
    amapi_sim: AmapiSimulator,  # noqa: F811
    units: dict[str, int],
) -> None:
    with session_factory() as session:
        _bind(session, settings, amapi_sim)
        profile = create_profile(session, SYSTEM, UNIT_PROFILE)
        assign_profile(session, settings, profile, session.get(OrgUnit, units["station"]), actor=SYSTEM)
        # The station chooses AMAPI; its units inherit it, the pump company keeps the agent.
        set_android_mode(session, session.get(OrgUnit, units["station"]), "amapi", actor=SYSTEM)
        set_android_mode(session, session.get(OrgUnit, units["p1"]), "agent", actor=SYSTEM)
        assert android_mode(session, units["a1"]) == "amapi" and android_mode(session, units["hq"]) == "agent"
        assert amapi_unit_ids(session) == sorted([units["station"], units["a1"]])
        with amapi_client_for(session, settings) as client:
            token = create_token(
                session, settings, client, session.get(OrgUnit, units["a1"]), actor=SYSTEM, days=7
            )
        session.commit()
        qr = json.loads(qr_payload(settings, token))
        policy_row = session.scalars(select(AmapiPolicy).where(AmapiPolicy.org_unit_id == units["a1"])).one()
        token_name = token.token_name

    assert "PROVISIONING_ADMIN_EXTRAS_BUNDLE" in json.dumps(qr) or "android.app.extra" in json.dumps(qr)
    stored = amapi_sim.policies[policy_row.policy_name]
    assert schema_problems(stored, "Policy", strict=True) == []
    assert stored["cameraAccess"] == "CAMERA_ACCESS_DISABLED"
    assert stored["deviceConnectivityManagement"]["usbDataAccess"] == "DISALLOW_USB_DATA_TRANSFER"
    assert stored["passwordPolicies"][0]["passwordMinimumLength"] == 6
    apps = {a["packageName"]: a["installType"] for a in stored["applications"]}
    assert apps == {"com.example.game": "BLOCKED", "jp.example.fd.hanso": "FORCE_INSTALLED"}
    assert stored["statusReportingSettings"]["softwareInfoEnabled"] is True
    # EAP-TLS: the unit's identity from the built-in CA, as PKCS#12 referenced by the network.
    onc = stored["openNetworkConfiguration"]
    eap = onc["NetworkConfigurations"][0]["WiFi"]["EAP"]
    client_cert = next(c for c in onc["Certificates"] if c["Type"] == "Client")
    assert eap["ClientCertType"] == "Ref" and eap["ClientCertRef"] == client_cert["GUID"]
    key, cert, _chain = pkcs12.load_key_and_certificates(base64.b64decode(client_cert["PKCS12"]), None)
    assert key is not None and cert is not None and "wifi unit" in cert.subject.rfc4514_string()

    device_name = amapi_sim.enroll_device(
        token_value_of(settings, session_factory, token_name), serial="R52T0001"
    )
    device = amapi_sim.devices[device_name]
    assert device.policy_name == policy_row.policy_name
    with session_factory() as session:
        # The device lands in the unit of the token it used, and only there.
        assert (
            unit_of_enrollment(session, token_name, json.dumps({"org_unit_id": units["a1"]})) == units["a1"]
        )
        assert unit_of_enrollment(session, token_name, json.dumps({"org_unit_id": units["p1"]})) is None
        assert (
            unit_of_enrollment(session, "enterprises/LCx/enrollmentTokens/forged", '{"org_unit_id": 1}')
            is None
        )
    assert amapi_sim.violations == []


def token_value_of(settings: Any, session_factory: Any, token_name: str) -> str:
    from mdm.ground.secretbox import unseal
    from mdm.services.amapi.tokens import VALUE_PURPOSE

    with session_factory() as session:
        row = session.scalars(
            select(AmapiEnrollmentToken).where(AmapiEnrollmentToken.token_name == token_name)
        ).one()
        return unseal(settings.secret_key, VALUE_PURPOSE, row.value_sealed).decode()


def test_a_policy_is_patched_only_when_its_content_changes(
    app: Any,
    session_factory: Any,
    settings: Any,
    amapi_sim: AmapiSimulator,  # noqa: F811
    units: dict[str, int],
) -> None:
    with session_factory() as session:
        _bind(session, settings, amapi_sim)
        set_android_mode(session, session.get(OrgUnit, units["a1"]), "amapi", actor=SYSTEM)
        with amapi_client_for(session, settings) as client:
            first = sync_amapi_policies(session, settings, client)
            again = sync_amapi_policies(session, settings, client)
            profile = create_profile(session, SYSTEM, UNIT_PROFILE)
            assign_profile(session, settings, profile, session.get(OrgUnit, units["a1"]), actor=SYSTEM)
            changed = sync_amapi_policies(session, settings, client)
            steady = sync_amapi_policies(session, settings, client)
        session.commit()
        row = session.scalars(select(AmapiPolicy).where(AmapiPolicy.org_unit_id == units["a1"])).one()
        assert row.version == 2
    assert first == {"patched": [units["a1"]], "unchanged": 0, "failed": []}
    assert again == {"patched": [], "unchanged": 1, "failed": []}
    assert changed["patched"] == [units["a1"]] and steady["patched"] == []
    patches = [r for r in amapi_sim.requests if r.method == "PATCH" and "/policies/" in r.path]
    assert len(patches) == 2
    assert amapi_sim.violations == []


# -- through the API ----------------------------------------------------------------------------


def test_the_api_binds_makes_tokens_and_never_shows_the_key(
    app: Any,
    client: Any,
    session_factory: Any,
    settings: Any,
    amapi_sim: AmapiSimulator,  # noqa: F811
    units: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    info = amapi_sim.service_account_info()
    with session_factory() as session:
        admin = bearer(make_token(session, "admin"))
        operator = bearer(make_token(session, "operator"))
        auditor = bearer(make_token(session, "auditor"))
        session.commit()
    answers: list[str] = []

    def call(method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        response = client.open(f"/api/v1{path}", method=method, headers=headers, json=body)
        answers.append(response.get_data(as_text=True))
        return response

    # Nobody but an administrator binds, uploads or makes tokens.
    assert call("POST", "/amapi/credential", operator, {"service_account": info}).status_code == 403
    assert call("POST", "/amapi/credential", auditor, {"service_account": info}).status_code == 403
    bad = call("POST", "/amapi/credential", admin, {"service_account": {**info, "type": "user"}})
    assert bad.status_code == 400 and "service_account" in bad.get_json()["error"]["fields"]
    stored = call("POST", "/amapi/credential", admin, {"service_account": info})
    assert stored.status_code == 200, stored.get_data()
    assert stored.get_json()["credential"]["client_email"] == info["client_email"]
    assert call("POST", "/amapi/signup", operator, {}).status_code == 403
    signup = call("POST", "/amapi/signup", admin, {})
    assert signup.status_code == 200, signup.get_data()
    with session_factory() as session:
        name = enterprise_row(session).signup_url_name
    enterprise_token = amapi_sim.complete_signup(name)
    assert (
        call("POST", "/amapi/signup/complete", operator, {"enterprise_token": enterprise_token}).status_code
        == 403
    )
    bound = call("POST", "/amapi/signup/complete", admin, {"enterprise_token": enterprise_token})
    assert bound.status_code == 200 and bound.get_json()["state"] == "bound"
    subscription = amapi_sim.create_subscription(TOPIC)
    notified = call(
        "PUT", "/amapi/notifications", admin, {"pubsub_topic": TOPIC, "pubsub_subscription": subscription}
    )
    assert notified.status_code == 200, notified.get_data()
    enterprise = amapi_sim.enterprises[bound.get_json()["enterprise_name"]]
    assert sorted(enterprise["enabledNotificationTypes"]) == [
        "COMMAND",
        "ENROLLMENT",
        "STATUS_REPORT",
        "USAGE_LOGS",
    ]

    unit = units["a1"]
    # A token for a unit still on the agent path is refused.
    assert call("POST", f"/org-units/{unit}/amapi-enrollment-tokens", admin, {"days": 7}).status_code == 409
    assert (
        call("PUT", f"/org-units/{unit}/android-mode", operator, {"android_mode": "amapi"}).status_code == 403
    )
    moded = call("PUT", f"/org-units/{unit}/android-mode", admin, {"android_mode": "amapi"})
    assert moded.get_json() == {"android_mode": "amapi", "effective": "amapi", "policy_error": None}
    assert (
        call("POST", f"/org-units/{unit}/amapi-enrollment-tokens", operator, {"days": 7}).status_code == 403
    )
    hostile = call("POST", f"/org-units/{unit}/amapi-enrollment-tokens", admin, {"days": 10**12})
    assert hostile.status_code in (400, 422)
    made = call("POST", f"/org-units/{unit}/amapi-enrollment-tokens", admin, {"days": 7})
    assert made.status_code == 201, made.get_data()
    assert json.loads(made.get_json()["qr_code"])
    listed = call("GET", f"/org-units/{unit}/amapi-enrollment-tokens", auditor)
    assert listed.status_code == 200 and "qr_code" not in listed.get_json()[0]
    revoked = call("DELETE", f"/org-units/{unit}/amapi-enrollment-tokens/{made.get_json()['id']}", admin)
    assert revoked.get_json()["state"] == "revoked"
    assert made.get_json()["token_name"] not in amapi_sim.enrollment_tokens
    status = call("GET", "/amapi/enterprise", auditor)
    assert status.status_code == 200

    # The key is nowhere: answers, logs, audit details.
    secret_bits = [info["private_key"], info["private_key"].splitlines()[1]]
    with session_factory() as session:
        details = [json.dumps(e.details, ensure_ascii=False) for e in session.scalars(select(AuditEvent))]
    for text in [*answers, caplog.text, *details]:
        for bit in secret_bits:
            assert bit not in text
    assert any("amapi.credential_uploaded" == e for e in _actions(session_factory))
    assert amapi_sim.violations == []


def _actions(session_factory: Any) -> list[str]:
    with session_factory() as session:
        return list(session.scalars(select(AuditEvent.action)))


def test_the_scheduler_job_patches_a_unit_whose_profiles_changed(
    app: Any,
    session_factory: Any,
    settings: Any,
    amapi_sim: AmapiSimulator,  # noqa: F811
    units: dict[str, int],
) -> None:
    from mdm.services.amapi.schedule import scheduled_policy_sync

    assert scheduled_policy_sync(session_factory, settings) == {"skipped": "no enterprise bound"}
    with session_factory() as session:
        _bind(session, settings, amapi_sim)
        set_android_mode(session, session.get(OrgUnit, units["a1"]), "amapi", actor=SYSTEM)
        session.commit()
    assert scheduled_policy_sync(session_factory, settings)["patched"] == [units["a1"]]
    with session_factory() as session:
        # Assigned to the HQ: the AMAPI unit below it inherits the profile.
        profile = create_profile(session, SYSTEM, UNIT_PROFILE)
        assign_profile(session, settings, profile, session.get(OrgUnit, units["hq"]), actor=SYSTEM)
        session.commit()
    assert scheduled_policy_sync(session_factory, settings)["patched"] == [units["a1"]]
    assert scheduled_policy_sync(session_factory, settings)["patched"] == []
    policy = amapi_sim.policies[f"{_enterprise(session_factory)}/policies/unit-{units['a1']}"]
    assert policy["cameraAccess"] == "CAMERA_ACCESS_DISABLED"
    assert amapi_sim.violations == []


def _enterprise(session_factory: Any) -> str:
    with session_factory() as session:
        return enterprise_row(session).enterprise_name


# -- the console --------------------------------------------------------------------------------


def test_console_binds_sets_a_unit_to_amapi_and_prints_its_qr_sheet(
    app: Any,
    client: Any,
    session_factory: Any,
    settings: Any,
    amapi_sim: AmapiSimulator,  # noqa: F811
    units: dict[str, int],
) -> None:
    from io import BytesIO

    from tests.web.helpers import csrf_of, login, make_user, post_form

    info = amapi_sim.service_account_info()
    with session_factory() as session:
        admin = make_user(session, settings, "amapi-admin", "admin")
        auditor = make_user(session, settings, "amapi-auditor", "auditor")
        session.commit()
    login(client, admin)
    page = client.get("/console/settings/amapi")
    assert page.status_code == 200 and "サービスアカウントがありません" in page.get_data(as_text=True)
    uploaded = client.post(
        "/console/settings/amapi/credential",
        data={
            "csrf_token": csrf_of(page.data),
            "service_account": (BytesIO(json.dumps(info).encode()), "k.json"),
        },
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 302
    signup = post_form(client, "/console/settings/amapi/signup", {}, page="/console/settings/amapi")
    assert signup.status_code == 302 and signup.headers["Location"].startswith("http")
    with session_factory() as session:
        enterprise_token = amapi_sim.complete_signup(enterprise_row(session).signup_url_name)
    back = client.get(f"/console/settings/amapi/callback?enterpriseToken={enterprise_token}")
    assert enterprise_token in back.get_data(as_text=True)
    bound = post_form(
        client,
        "/console/settings/amapi/complete",
        {"enterprise_token": enterprise_token},
        page="/console/settings/amapi",
    )
    assert bound.status_code == 302
    html = client.get("/console/settings/amapi").get_data(as_text=True)
    assert 'id="amapi-enterprise-name"' in html and info["client_email"] in html
    assert info["private_key"].splitlines()[1] not in html

    unit_page = f"/console/org-units/{units['a1']}"
    moded = post_form(client, f"{unit_page}/android-mode", {"android_mode": "amapi"}, page=unit_page)
    assert moded.status_code == 302
    made = post_form(client, f"{unit_page}/amapi-tokens", {"days": "14"}, page=unit_page)
    assert made.status_code == 302 and "/sheet" in made.headers["Location"]
    sheet = client.get(made.headers["Location"])
    text = sheet.get_data(as_text=True)
    assert sheet.status_code == 200 and "<svg" in text and "中央救急隊" in text
    assert sheet.headers["Cache-Control"] == "no-store"

    reader = app.test_client()
    login(reader, auditor)
    assert reader.get("/console/settings/amapi").status_code == 200
    assert reader.get(made.headers["Location"]).status_code == 403  # the QR is an enrollment secret
    assert post_form(reader, f"{unit_page}/amapi-tokens", {}, page=unit_page).status_code == 403
    assert amapi_sim.violations == []


def test_cli_stores_the_key_and_shows_the_binding_without_it(
    app: Any,
    settings: Any,
    amapi_sim: AmapiSimulator,  # noqa: F811
    tmp_path: Any,
) -> None:
    from click.testing import CliRunner

    from mdm.roots.cli import main

    info = amapi_sim.service_account_info()
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info))
    env = {
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_AMAPI_URL": amapi_sim.api_url,
        "HIKESHI_PUBSUB_URL": amapi_sim.pubsub_url,
    }
    runner = CliRunner()
    stored = runner.invoke(main, ["amapi", "upload-credential", str(key_file)], env=env)
    assert stored.exit_code == 0, stored.output
    shown = runner.invoke(main, ["amapi", "status"], env=env)
    assert shown.exit_code == 0 and info["client_email"] in shown.output
    assert info["private_key"].splitlines()[1] not in shown.output + stored.output
    synced = runner.invoke(main, ["amapi", "sync-policies"], env=env)
    assert synced.exit_code == 0 and "no enterprise bound" in synced.output
