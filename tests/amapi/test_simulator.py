"""The AMAPI + Pub/Sub simulator itself, over real HTTP: what it accepts, refuses and emits.

The other AMAPI tests trust it to be Google-shaped; these pin the parts they rely on (OAuth2
JWT-bearer, validation against the discovery documents, long-running operations, wipe,
notifications with redelivery, paging, throttling)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from functools import cache
from typing import Any

import httpx
import pytest
from google.auth import crypt
from google.auth.transport import Response as AuthResponse
from google.oauth2 import service_account

from tests.support.amapi_schema import schema_problems
from tests.support.amapi_sim import AmapiSimulator
from tests.support.amapi_sim_auth import (
    AMAPI_SCOPE,
    JWT_BEARER,
    PUBSUB_SCOPE,
    service_account_key,
    sign_assertion,
    stranger_key,
)

TOPIC = "projects/hikeshi-test/topics/amapi-events"


class _HttpxAuthResponse(AuthResponse):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Any:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _HttpxAuthRequest:
    """google.auth's transport Request, over httpx (what a client of the simulator would use)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> _HttpxAuthResponse:
        return _HttpxAuthResponse(self._client.request(method, url, content=body, headers=headers))


@cache
def _signer() -> crypt.RSASigner:
    key = service_account_key()
    return crypt.RSASigner.from_string(key.private_pem, key.key_id)


class Caller:
    """A client holding an access token obtained through google-auth's service-account flow."""

    def __init__(
        self,
        sim: AmapiSimulator,
        http: httpx.Client,
        scopes: tuple[str, ...] = (AMAPI_SCOPE, PUBSUB_SCOPE),
        project_id: str = "hikeshi-test",
    ) -> None:
        self.sim = sim
        self.http = http
        info = sim.service_account_info(project_id)
        # As from_service_account_info(info, scopes=...) builds them, with the parsed key reused.
        credentials = service_account.Credentials(
            _signer(),
            info["client_email"],
            info["token_uri"],
            scopes=list(scopes),
            project_id=info["project_id"],
        )
        credentials.refresh(_HttpxAuthRequest(self.http))
        self.token = credentials.token

    def amapi(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self._auth(), **(headers or {})}
        return self.http.request(method, f"{self.sim.api_url}/{path}", headers=headers, **kwargs)

    def pubsub(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, f"{self.sim.pubsub_url}/{path}", headers=self._auth(), **kwargs)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def pull(self, subscription: str, n: int = 10) -> list[dict[str, Any]]:
        answer = self.pubsub("POST", f"{subscription}:pull", json={"maxMessages": n})
        assert answer.status_code == 200, answer.text
        return answer.json().get("receivedMessages", [])


@pytest.fixture
def sim() -> Iterator[AmapiSimulator]:
    with AmapiSimulator() as simulator:
        yield simulator
        # Every test leaves the simulator with nothing the discovery documents would refuse.
        assert simulator.violations == []


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for the module: building its TLS context costs more than a whole test here.
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def caller(sim: AmapiSimulator, http: httpx.Client) -> Caller:
    return Caller(sim, http)


def _enterprise(
    caller: Caller, *, notifications: tuple[str, ...] = ("ENROLLMENT", "STATUS_REPORT", "COMMAND")
) -> str:
    signup = caller.amapi(
        "POST", "signupUrls", params={"projectId": "hikeshi-test", "callbackUrl": "https://mdm.example.jp/cb"}
    ).json()
    token = caller.sim.complete_signup(signup["name"])
    created = caller.amapi(
        "POST",
        "enterprises",
        params={"projectId": "hikeshi-test", "signupUrlName": signup["name"], "enterpriseToken": token},
        json={"enterpriseDisplayName": "横浜市消防局"},
    )
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    patched = caller.amapi(
        "PATCH",
        name,
        params={"updateMask": "pubsubTopic,enabledNotificationTypes"},
        json={"pubsubTopic": TOPIC, "enabledNotificationTypes": list(notifications)},
    )
    assert patched.status_code == 200, patched.text
    return name


def _enrolled(
    caller: Caller, enterprise: str, *, policy: dict[str, Any] | None = None, serial: str = "R52T30ABCDE"
) -> str:
    caller.amapi("PATCH", f"{enterprise}/policies/unit-1", json=policy or {"cameraDisabled": True})
    token = caller.amapi(
        "POST",
        f"{enterprise}/enrollmentTokens",
        json={"policyName": "unit-1", "additionalData": '{"org_unit_id": 7}', "duration": "3600s"},
    ).json()
    return caller.sim.enroll_device(token["value"], serial=serial)


def _decoded(received: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    message = received["message"]
    return message["attributes"]["notificationType"], json.loads(base64.b64decode(message["data"]))


def _error(answer: httpx.Response) -> dict[str, Any]:
    error = answer.json()["error"]
    assert set(error) >= {"code", "message", "status"}
    return error


# -- OAuth2 ---------------------------------------------------------------------------------------


def test_google_auth_service_account_token_opens_the_api(sim: AmapiSimulator, caller: Caller) -> None:
    assert caller.token
    answer = caller.amapi("GET", "enterprises", params={"projectId": "hikeshi-test"})
    assert answer.status_code == 200, answer.text
    assert sim.requests[-1].path == "v1/enterprises"


@pytest.mark.parametrize("wrong", ["key", "aud", "expired", "iss"])
def test_a_wrong_assertion_gets_no_token(sim: AmapiSimulator, http: httpx.Client, wrong: str) -> None:
    info = sim.service_account_info()
    now = int(time.time())
    claims = {
        "iss": info["client_email"],
        "aud": info["token_uri"],
        "scope": AMAPI_SCOPE,
        "iat": now,
        "exp": now + 3600,
    }
    key = service_account_key()
    if wrong == "key":
        key = stranger_key()
    elif wrong == "aud":
        claims["aud"] = "https://androidmanagement.googleapis.com/"
    elif wrong == "expired":
        claims.update(iat=now - 7200, exp=now - 3600)
    else:
        claims["iss"] = "someone@elsewhere.iam.gserviceaccount.com"
    assertion = sign_assertion(key, claims, kid=service_account_key().key_id)
    answer = http.post(sim.token_url, data={"grant_type": JWT_BEARER, "assertion": assertion})
    assert answer.status_code == 400
    assert answer.json()["error"] in ("invalid_grant", "invalid_request")
    assert "access_token" not in answer.json()
    assert sim.violations and sim.violations[0].startswith("token refused")
    sim.violations.clear()


def test_calls_without_a_live_token_are_401(sim: AmapiSimulator, caller: Caller) -> None:
    bare = caller.http.get(f"{sim.api_url}/enterprises", params={"projectId": "hikeshi-test"})
    assert bare.status_code == 401
    assert _error(bare)["status"] == "UNAUTHENTICATED"
    assert "WWW-Authenticate" in bare.headers
    sim.expire_tokens()
    revoked = caller.amapi("GET", "enterprises", params={"projectId": "hikeshi-test"})
    assert revoked.status_code == 401


def test_a_token_without_the_pubsub_scope_cannot_pull(sim: AmapiSimulator, http: httpx.Client) -> None:
    narrow = Caller(sim, http, scopes=(AMAPI_SCOPE,))
    subscription = sim.create_subscription(TOPIC)
    answer = narrow.pubsub("POST", f"{subscription}:pull", json={"maxMessages": 1})
    assert answer.status_code == 403
    assert _error(answer)["status"] == "PERMISSION_DENIED"


# -- validation against the discovery documents --------------------------------------------------


def test_a_body_the_document_refuses_is_400_and_recorded(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    unknown = caller.amapi(
        "PATCH", f"{enterprise}/policies/p", json={"cameraDisabled": True, "cameraOff": True}
    )
    assert unknown.status_code == 400
    assert _error(unknown)["status"] == "INVALID_ARGUMENT"
    assert "cameraOff" in _error(unknown)["message"]
    enum = caller.amapi("POST", f"{enterprise}/devices/abc:issueCommand", json={"type": "SELF_DESTRUCT"})
    assert enum.status_code == 400
    query = caller.amapi("GET", f"{enterprise}/devices", params={"pageSize": "many"})
    assert query.status_code == 400
    wrong_type = caller.amapi("PATCH", f"{enterprise}/policies/p", json={"cameraDisabled": "yes"})
    assert wrong_type.status_code == 400
    assert len(sim.violations) == 4
    assert any("cameraOff" in v for v in sim.violations)
    assert any("SELF_DESTRUCT" in v for v in sim.violations)
    assert f"{enterprise}/policies/p" not in sim.policies  # nothing half-written
    sim.violations.clear()


def test_unknown_resources_are_404_in_googles_shape(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    for path in (
        f"{enterprise}/devices/0123456789abcdef",
        f"{enterprise}/policies/none",
        "enterprises/LC0nothere",
        f"{enterprise}/gadgets",
    ):
        answer = caller.amapi("GET", path)
        assert answer.status_code == 404, path
        assert _error(answer) == {"code": 404, "message": _error(answer)["message"], "status": "NOT_FOUND"}


# -- enrollment, notifications --------------------------------------------------------------------


def test_enrollment_emits_enrollment_then_status_report(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    subscription = sim.create_subscription(TOPIC)
    policy = {
        "passwordRequirements": {"passwordQuality": "NUMERIC_COMPLEX", "passwordMinimumLength": 6},
        "applications": [{"packageName": "jp.example.fire", "installType": "FORCE_INSTALLED"}],
        "statusReportingSettings": {
            "softwareInfoEnabled": True,
            "applicationReportsEnabled": True,
            "memoryInfoEnabled": True,
            "networkInfoEnabled": True,
            "deviceSettingsEnabled": True,
            "powerManagementEventsEnabled": True,
        },
    }
    token = None
    caller.amapi("PATCH", f"{enterprise}/policies/unit-1", json=policy)
    created = caller.amapi(
        "POST",
        f"{enterprise}/enrollmentTokens",
        json={"policyName": "unit-1", "additionalData": '{"org_unit_id": 7}'},
    )
    assert created.status_code == 200, created.text
    token = created.json()
    qr = json.loads(token["qrCode"])
    assert (
        qr["android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"][
            "com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN"
        ]
        == token["value"]
    )
    assert token["policyName"] == f"{enterprise}/policies/unit-1"

    device_name = sim.enroll_device(token["value"], serial="R52T30XYZ", imei="356789012345678")

    received = caller.pull(subscription)
    kinds = [_decoded(r)[0] for r in received]
    assert kinds == ["ENROLLMENT", "STATUS_REPORT"]
    report = _decoded(received[1])[1]
    assert report["name"] == device_name
    assert report["enrollmentTokenData"] == '{"org_unit_id": 7}'
    assert report["appliedPolicyVersion"] == "1"
    assert report["policyCompliant"] is True
    assert report["hardwareInfo"]["serialNumber"] == "R52T30XYZ"
    assert report["softwareInfo"]["androidVersion"] == "14"
    assert report["networkInfo"]["imei"] == "356789012345678"
    assert "jp.example.fire" in {a["packageName"] for a in report["applicationReports"]}
    got = caller.amapi("GET", device_name).json()
    assert got["appliedState"] == "ACTIVE"
    assert schema_problems(got, "Device", strict=True) == []

    # The user turns the passcode off: a STATUS_REPORT saying so, and the device is not compliant.
    sim.report_status(device_name, passcode_set=False)
    caller.pubsub("POST", f"{subscription}:acknowledge", json={"ackIds": [r["ackId"] for r in received]})
    (status,) = caller.pull(subscription)
    kind, body = _decoded(status)
    assert kind == "STATUS_REPORT"
    assert body["policyCompliant"] is False
    assert body["nonComplianceDetails"][0]["settingName"] == "passwordRequirements"
    assert body["deviceSettings"]["isDeviceSecure"] is False


def test_unacked_notifications_come_back_after_the_ack_deadline(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    subscription = sim.create_subscription(TOPIC)
    _enrolled(caller, enterprise)
    first = caller.pull(subscription)
    assert len(first) == 2
    assert caller.pull(subscription) == []  # still leased
    caller.pubsub("POST", f"{subscription}:acknowledge", json={"ackIds": [first[0]["ackId"]]})
    sim.advance(sim.ack_deadline_seconds + 1)
    again = caller.pull(subscription)
    assert [r["message"]["messageId"] for r in again] == [first[1]["message"]["messageId"]]
    assert again[0]["ackId"] != first[1]["ackId"]
    caller.pubsub("POST", f"{subscription}:acknowledge", json={"ackIds": [again[0]["ackId"]]})
    sim.advance(sim.ack_deadline_seconds + 1)
    assert caller.pull(subscription) == []


def test_only_enabled_notification_types_are_published(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller, notifications=("ENROLLMENT",))
    subscription = sim.create_subscription(TOPIC)
    _enrolled(caller, enterprise)
    assert [_decoded(r)[0] for r in caller.pull(subscription)] == ["ENROLLMENT"]


# -- commands, operations, wipe ------------------------------------------------------------------


def test_a_command_is_an_operation_done_once_the_device_runs_it(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    device = _enrolled(caller, enterprise)
    subscription = sim.create_subscription(TOPIC)
    issued = caller.amapi(
        "POST",
        f"{device}:issueCommand",
        json={
            "type": "START_LOST_MODE",
            "startLostModeParams": {
                "lostMessage": {"defaultMessage": "消防局へ連絡してください"},
                "lostPhoneNumber": {"defaultMessage": "045-000-0000"},
            },
        },
    )
    assert issued.status_code == 200, issued.text
    operation = issued.json()
    assert operation["name"].startswith(f"{device}/operations/")
    assert not operation.get("done")
    assert operation["metadata"]["type"] == "START_LOST_MODE"
    assert caller.amapi("GET", operation["name"]).json().get("done") is not True

    assert sim.run_device(device) == [operation["name"]]

    done = caller.amapi("GET", operation["name"]).json()
    assert done["done"] is True and "error" not in done
    assert done["metadata"]["startLostModeStatus"] == {"status": "SUCCESS"}
    kinds = {_decoded(r)[0]: _decoded(r)[1] for r in caller.pull(subscription)}
    assert kinds["COMMAND"]["name"] == operation["name"]
    assert kinds["COMMAND"]["done"] is True
    assert caller.amapi("GET", device).json()["appliedState"] == "LOST"
    listed = caller.amapi("GET", f"{device}/operations").json()
    assert [o["name"] for o in listed["operations"]] == [operation["name"]]


def test_a_failed_command_ends_with_an_error(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    device = _enrolled(caller, enterprise)
    sim.fail_next_command(device, code="API_LEVEL", message="too old")
    lock = caller.amapi("POST", f"{device}:issueCommand", json={"type": "LOCK"}).json()
    relinquish = caller.amapi("POST", f"{device}:issueCommand", json={"type": "RELINQUISH_OWNERSHIP"}).json()
    sim.run_device(device)
    failed = caller.amapi("GET", lock["name"]).json()
    assert failed["done"] is True
    assert failed["error"] == {"code": 9, "message": "too old"}
    assert failed["metadata"]["errorCode"] == "API_LEVEL"
    refused = caller.amapi("GET", relinquish["name"]).json()
    assert refused["metadata"]["errorCode"] == "MANAGEMENT_MODE"  # a fully managed device


def test_delete_wipes_the_device(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    device = _enrolled(caller, enterprise)
    subscription = sim.create_subscription(TOPIC)
    answer = caller.amapi(
        "DELETE",
        device,
        params=[
            ("wipeDataFlags", "WIPE_EXTERNAL_STORAGE"),
            ("wipeDataFlags", "WIPE_ESIMS"),
            ("wipeReasonMessage", "紛失のため消去"),
        ],
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}
    assert sim.wiped[device] == {
        "wipeDataFlags": ["WIPE_EXTERNAL_STORAGE", "WIPE_ESIMS"],
        "wipeReasonMessage": "紛失のため消去",
    }
    assert caller.amapi("GET", device).status_code == 404
    (last,) = caller.pull(subscription)
    assert _decoded(last)[1]["appliedState"] == "DELETED"


def test_devices_list_in_pages(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    names = {_enrolled(caller, enterprise, serial=f"R52T{n:05d}") for n in range(5)}
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"pageSize": 2, **({"pageToken": token} if token else {})}
        page = caller.amapi("GET", f"{enterprise}/devices", params=params).json()
        pages += 1
        seen += [d["name"] for d in page["devices"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(names)


def test_throttling_answers_429_with_retry_after_then_recovers(sim: AmapiSimulator, caller: Caller) -> None:
    sim.set_rate_limit(2, retry_after=3)
    sim.fail_next(503)
    first = caller.amapi("GET", "enterprises", params={"projectId": "hikeshi-test"})
    assert first.status_code == 503
    assert _error(first)["status"] == "UNAVAILABLE"
    for _ in range(2):
        limited = caller.amapi("GET", "enterprises", params={"projectId": "hikeshi-test"})
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "3"
        assert _error(limited)["status"] == "RESOURCE_EXHAUSTED"
    assert caller.amapi("GET", "enterprises", params={"projectId": "hikeshi-test"}).status_code == 200


def test_policy_versions_and_reapplication_when_the_device_comes_online(
    sim: AmapiSimulator, caller: Caller
) -> None:
    enterprise = _enterprise(caller)
    device = _enrolled(caller, enterprise, policy={"cameraAccess": "CAMERA_ACCESS_DISABLED"})
    subscription = sim.create_subscription(TOPIC)
    second = caller.amapi(
        "PATCH",
        f"{enterprise}/policies/unit-1",
        params={"updateMask": "applications"},
        json={"applications": [{"packageName": "jp.example.blocked", "installType": "BLOCKED"}]},
    ).json()
    assert second["version"] == "2"
    assert second["cameraAccess"] == "CAMERA_ACCESS_DISABLED"  # kept: not in the mask
    assert caller.amapi("GET", device).json()["appliedPolicyVersion"] == "1"
    assert sim.run_device(device) == []
    (report,) = caller.pull(subscription)
    assert _decoded(report)[1]["appliedPolicyVersion"] == "2"
    bad_mask = caller.amapi(
        "PATCH", f"{enterprise}/policies/unit-1", params={"updateMask": "camera"}, json={}
    )
    assert bad_mask.status_code == 400
    in_use = caller.amapi("DELETE", f"{enterprise}/policies/unit-1")
    assert in_use.status_code == 400
    assert _error(in_use)["status"] == "FAILED_PRECONDITION"
    sim.violations.clear()  # the bad updateMask


def test_enrollment_tokens_expire_and_one_time_tokens_are_used_up(
    sim: AmapiSimulator, caller: Caller
) -> None:
    enterprise = _enterprise(caller)
    caller.amapi("PATCH", f"{enterprise}/policies/unit-1", json={"screenCaptureDisabled": True})
    once = caller.amapi(
        "POST", f"{enterprise}/enrollmentTokens", json={"policyName": "unit-1", "oneTimeOnly": True}
    ).json()
    short = caller.amapi(
        "POST", f"{enterprise}/enrollmentTokens", json={"policyName": "unit-1", "duration": "120s"}
    ).json()
    listed = caller.amapi("GET", f"{enterprise}/enrollmentTokens").json()["enrollmentTokens"]
    assert {t["name"] for t in listed} == {once["name"], short["name"]}
    sim.enroll_device(once["value"])
    with pytest.raises(ValueError):
        sim.enroll_device(once["value"])
    sim.advance(121)
    with pytest.raises(ValueError):
        sim.enroll_device(short["value"])
    assert caller.amapi("GET", short["name"]).status_code == 404
    nowhere = caller.amapi("POST", f"{enterprise}/enrollmentTokens", json={"policyName": "missing"}).json()
    with pytest.raises(ValueError, match="does not exist"):
        sim.enroll_device(nowhere["value"])


def test_status_changes_commands_and_usage_logs_reach_the_subscription(
    sim: AmapiSimulator, caller: Caller
) -> None:
    enterprise = _enterprise(caller, notifications=("STATUS_REPORT", "COMMAND", "USAGE_LOGS"))
    policy = {
        "passwordPolicies": [{"passwordMinimumLength": 6, "passwordQuality": "NUMERIC_COMPLEX"}],
        "applications": [
            {"packageName": "jp.example.fire", "installType": "FORCE_INSTALLED"},
            {"packageName": "jp.example.missing", "installType": "FORCE_INSTALLED"},
        ],
        "statusReportingSettings": {"applicationReportsEnabled": True},
        "usageLog": {"enabledLogTypes": ["SECURITY_LOGS"]},
    }
    sim.unavailable_packages.add("jp.example.missing")
    device = _enrolled(caller, enterprise, policy=policy)
    got = caller.amapi("GET", device).json()
    assert got["policyCompliant"] is False
    (missing,) = got["nonComplianceDetails"]
    assert missing["packageName"] == "jp.example.missing"
    assert missing["installationFailureReason"] == "NOT_FOUND"

    subscription = sim.create_subscription(TOPIC)
    caller.amapi(
        "POST",
        f"{device}:issueCommand",
        json={"type": "RESET_PASSWORD", "newPassword": "", "resetPasswordFlags": ["LOCK_NOW"]},
    )
    caller.amapi(
        "POST",
        f"{device}:issueCommand",
        json={
            "type": "CLEAR_APP_DATA",
            "clearAppsDataParams": {"packageNames": ["jp.example.fire", "jp.example.x"]},
        },
    )
    caller.amapi("POST", f"{device}:issueCommand", json={"type": "RESET_PASSWORD", "newPassword": "739164"})
    assert len(sim.run_device(device)) == 3
    sim.report_status(device, passcode_set=False)
    sim.report_usage_logs(device, [{"eventType": "KEYGUARD_DISMISSED"}])
    messages = [_decoded(r) for r in caller.pull(subscription, 20)]
    kinds = [kind for kind, _ in messages]
    assert kinds.count("COMMAND") == 3 and kinds.count("USAGE_LOGS") == 1
    commands = [body for kind, body in messages if kind == "COMMAND"]
    # An empty password under a password policy: the device refuses it; a good one is set.
    assert commands[0]["metadata"]["errorCode"] == "INVALID_VALUE"
    assert "error" not in commands[2]
    cleared = next(
        body for kind, body in messages if kind == "COMMAND" and body["metadata"]["type"] == "CLEAR_APP_DATA"
    )
    assert cleared["metadata"]["clearAppsDataStatus"]["results"] == {
        "jp.example.fire": {"clearingResult": "SUCCESS"},
        "jp.example.x": {"clearingResult": "APP_NOT_FOUND"},
    }
    last_report = [body for kind, body in messages if kind == "STATUS_REPORT"][-1]
    # The user then removed the screen lock: not compliant with passwordPolicies either.
    assert {d["settingName"] for d in last_report["nonComplianceDetails"]} == {
        "applications",
        "passwordPolicies",
    }


def test_deprecated_fields_are_noted_not_refused(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    answer = caller.amapi("PATCH", f"{enterprise}/policies/old", json={"cameraDisabled": True})
    assert answer.status_code == 200
    assert sim.deprecations == [f"PATCH v1/{enterprise}/policies/old: Policy.cameraDisabled is deprecated"]


def test_a_body_must_be_json(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    answer = caller.amapi(
        "PATCH",
        f"{enterprise}/policies/p",
        content=b'{"cameraAccess": "CAMERA_ACCESS_DISABLED"}',
        headers={"Content-Type": "text/plain", "Authorization": f"Bearer {caller.token}"},
    )
    assert answer.status_code == 400
    assert any("Content-Type" in v for v in sim.violations)
    sim.violations.clear()


def test_a_lowered_ack_deadline_applies_to_existing_subscriptions(
    sim: AmapiSimulator, caller: Caller
) -> None:
    enterprise = _enterprise(caller, notifications=("ENROLLMENT",))
    subscription = sim.create_subscription(TOPIC)
    _enrolled(caller, enterprise)
    sim.ack_deadline_seconds = 1  # after the subscription was made, before the pull
    (first,) = caller.pull(subscription)
    sim.advance(1.5)
    (again,) = caller.pull(subscription)
    assert again["message"]["messageId"] == first["message"]["messageId"]


def test_reenrollment_and_disabling_a_device(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    first = _enrolled(caller, enterprise, serial="R52T3SAME01")
    caller.amapi("DELETE", first)
    second = _enrolled(caller, enterprise, serial="R52T3SAME01")
    assert caller.amapi("GET", second).json()["previousDeviceNames"] == [first]
    patched = caller.amapi(
        "PATCH",
        second,
        params={"updateMask": "state,disabledReason"},
        json={"state": "DISABLED", "disabledReason": {"defaultMessage": "点検中"}},
    ).json()
    assert patched["state"] == "DISABLED" and patched["appliedState"] == "ACTIVE"
    sim.run_device(second)
    assert caller.amapi("GET", second).json()["appliedState"] == "DISABLED"
    # ":issueCommand" percent-encoded reaches the same method.
    encoded = caller.amapi("POST", second + "%3AissueCommand", json={"type": "REBOOT"})
    assert encoded.status_code == 200, encoded.text


def _pkcs12_b64() -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit-7 wifi")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    data = pkcs12.serialize_key_and_certificates(b"wifi", key, certificate, None, NoEncryption())
    return base64.b64encode(data).decode()


def _eap_network(**eap: Any) -> dict[str, Any]:
    return {
        "GUID": "net-1",
        "Name": "消防本部",
        "Type": "WiFi",
        "WiFi": {
            "SSID": "fire-hq",
            "Security": "WPA-EAP",
            "AutoConnect": True,
            "EAP": {"Outer": "EAP-TLS", "ServerCARefs": ["ca-1"], **eap},
        },
    }


def test_wifi_onc_is_checked_by_the_server_and_by_the_device(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    ca = {"GUID": "ca-1", "Type": "Authority", "X509": "MIIB"}
    dangling = {
        "NetworkConfigurations": [
            _eap_network(ClientCertType="Ref", ClientCertRef="nope", DomainSuffixMatch=["radius.example.jp"])
        ],
        "Certificates": [ca],
    }
    refused = caller.amapi(
        "PATCH", f"{enterprise}/policies/wifi", json={"openNetworkConfiguration": dangling}
    )
    assert refused.status_code == 400
    assert "ClientCertRef" in _error(refused)["message"]
    sim.violations.clear()

    by_ref = {
        "NetworkConfigurations": [
            _eap_network(ClientCertType="Ref", ClientCertRef="id-1", DomainSuffixMatch=["radius.example.jp"])
        ],
        "Certificates": [ca, {"GUID": "id-1", "Type": "Client", "PKCS12": _pkcs12_b64()}],
    }
    device = _enrolled(caller, enterprise, policy={"openNetworkConfiguration": by_ref})
    assert caller.amapi("GET", device).json()["policyCompliant"] is True

    by_alias = {
        "NetworkConfigurations": [
            _eap_network(ClientCertType="KeyPairAlias", ClientCertKeyPairAlias="hikeshi-wifi-net-1")
        ],
        "Certificates": [ca],
    }
    caller.amapi("PATCH", f"{enterprise}/policies/unit-1", json={"openNetworkConfiguration": by_alias})
    sim.run_device(device)
    (detail,) = caller.amapi("GET", device).json()["nonComplianceDetails"]
    # No DomainSuffixMatch: Android refuses the enterprise network as insecure.
    assert detail["specificNonComplianceReason"] == "ONC_WIFI_INVALID_ENTERPRISE_CONFIG"
    by_alias["NetworkConfigurations"][0]["WiFi"]["EAP"]["DomainSuffixMatch"] = ["radius.example.jp"]
    caller.amapi("PATCH", f"{enterprise}/policies/unit-1", json={"openNetworkConfiguration": by_alias})
    sim.run_device(device)
    (detail,) = caller.amapi("GET", device).json()["nonComplianceDetails"]
    assert (
        detail["specificNonComplianceReason"] == "ONC_WIFI_KEY_PAIR_ALIAS_NOT_CORRESPONDING_TO_EXISTING_KEY"
    )
    report = sim.report_status(device, key_pair_aliases=["hikeshi-wifi-net-1"])
    assert report["policyCompliant"] is True


def test_a_service_account_reaches_only_its_own_project(
    sim: AmapiSimulator, caller: Caller, http: httpx.Client
) -> None:
    enterprise = _enterprise(caller)
    subscription = sim.create_subscription(TOPIC)
    other = Caller(sim, http, project_id="another-city")
    assert other.amapi("GET", enterprise).status_code == 403
    assert other.amapi("GET", "enterprises", params={"projectId": "hikeshi-test"}).status_code == 403
    listed = other.amapi("GET", "enterprises", params={"projectId": "another-city"})
    assert listed.json() == {}
    refused = other.pubsub("POST", f"{subscription}:pull", json={"maxMessages": 1})
    assert _error(refused)["status"] == "PERMISSION_DENIED"


def test_a_nack_redelivers_at_once_and_a_pending_command_can_be_cancelled(
    sim: AmapiSimulator, caller: Caller
) -> None:
    enterprise = _enterprise(caller, notifications=("ENROLLMENT",))
    subscription = sim.create_subscription(TOPIC)
    device = _enrolled(caller, enterprise)
    (first,) = caller.pull(subscription)
    nack = caller.pubsub(
        "POST",
        f"{subscription}:modifyAckDeadline",
        json={"ackIds": [first["ackId"]], "ackDeadlineSeconds": 0},
    )
    assert nack.status_code == 200, nack.text
    (again,) = caller.pull(subscription)
    assert again["message"]["messageId"] == first["message"]["messageId"]

    operation = caller.amapi("POST", f"{device}:issueCommand", json={"type": "REBOOT"}).json()
    assert caller.amapi("POST", f"{operation['name']}:cancel").status_code == 200
    assert sim.run_device(device) == []
    cancelled = caller.amapi("GET", operation["name"]).json()
    assert cancelled["done"] is True and cancelled["error"]["code"] == 1


def test_usb_data_lockdown_needs_android_12(sim: AmapiSimulator, caller: Caller) -> None:
    enterprise = _enterprise(caller)
    policy = {"deviceConnectivityManagement": {"usbDataAccess": "DISALLOW_USB_DATA_TRANSFER"}}
    caller.amapi("PATCH", f"{enterprise}/policies/unit-1", json=policy)
    token = caller.amapi("POST", f"{enterprise}/enrollmentTokens", json={"policyName": "unit-1"}).json()
    old = sim.enroll_device(token["value"], android_version="11")
    new = sim.enroll_device(token["value"], android_version="14")
    (detail,) = caller.amapi("GET", old).json()["nonComplianceDetails"]
    assert detail["nonComplianceReason"] == "API_LEVEL"
    assert detail["fieldPath"] == "deviceConnectivityManagement.usbDataAccess"
    assert caller.amapi("GET", new).json()["policyCompliant"] is True
