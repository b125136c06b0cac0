"""A local Android Management API (v1) and Cloud Pub/Sub (v1) on loopback, for tests.

Written from Google's public reference and the discovery documents google-api-python-client ships
(androidmanagement.v1.json, pubsub.v1.json: read at test time, never copied into the project),
independently of Hikeshi's client. The contract is /work/notes/AMAPI-INTERFACE.md; the names:

- `AmapiSimulator()`: context manager, or `start()` / `stop()`; the pytest fixture `amapi_sim`
  (import it into a conftest). `api_url` (stands for https://androidmanagement.googleapis.com/v1),
  `pubsub_url` (https://pubsub.googleapis.com/v1), `token_url`.
- `service_account_info(project_id="hikeshi-test")`: a service-account JSON key (RSA 2048, one
  per session) whose token_uri is `token_url`.
- `POST /token` (RFC 7523): the RS256 assertion must verify with the key, iss = client_email,
  aud = token_uri or https://oauth2.googleapis.com/token (DEVIATION from the contract: google-auth
  always signs that audience, and Google accepts it at any token_uri), a scope, exp within the
  hour (tests/support/amapi_sim_auth.py). Refusals are 400 `{"error": "invalid_grant",
  "error_description"}` as Google's token endpoint answers (and land in `violations`).
  `expire_tokens()` revokes every access token. Each API call needs a live bearer token (401
  UNAUTHENTICATED otherwise) whose scopes include the method's (AMAPI: androidmanagement;
  Pub/Sub: pubsub or cloud-platform; 403 PERMISSION_DENIED otherwise). A service account reaches
  only its own project: projectId parameters, enterprises created under another project and
  subscriptions of another project answer 403 PERMISSION_DENIED.
- Every call is matched to its discovery method (404 NOT_FOUND in Google's error shape
  `{"error": {"code", "message", "status"}}` when none), its path and query parameters and JSON
  body are checked against the document (400 INVALID_ARGUMENT), and its answer too (strict:
  int64 as strings, RFC 3339 timestamps); every problem is appended to `violations`, and every
  Pub/Sub notification payload is checked against its schema as well. A request body must be
  sent as application/json and an updateMask may only name fields of the body's schema.
  Deprecated fields or enum values a client sends (valid, but Google says to move off them) go
  to `deprecations`, not `violations`. `enroll_device` refuses (ValueError) a token whose
  policy does not exist, as Android Device Policy stops setup then. `requests` is the log of
  `RecordedRequest(method, path, params, body)` (path relative to the service root, e.g.
  `v1/enterprises/LC…/devices`; params as lists of values).
- AMAPI: signupUrls.create; enterprises create (`complete_signup(signup_url_name)` is the admin's
  browser step and returns the enterpriseToken) / get / list / patch / delete;
  enrollmentTokens create / get / list / delete (value, qrCode with the provisioning extras,
  expirationTimestamp, policyName default `<enterprise>/policies/default`, additionalData);
  policies patch (version += 1, updateMask honoured; the rules Google applies beyond the types,
  such as the supported subset of Open Network Configuration, are in amapi_sim_policy.py) / get
  / list / delete (refused with 400 FAILED_PRECONDITION while a device or token uses it);
  devices get / list (pageSize default 10, at most 100, pageToken) / patch (state, policyName,
  disabledReason) / delete (a wipe: `wiped[name]` = {"wipeDataFlags": [...],
  "wipeReasonMessage": ...}, a last STATUS_REPORT with state DELETED, then 404); issueCommand →
  Operation `<device>/operations/<n>` (metadata = the Command with its @type, not done; done
  with `response` Empty or `error` {code, message} plus metadata.errorCode once the device ran
  it); operations get / list / cancel. Other methods of the document answer 501 and are noted
  in `violations`. State is inspectable: `enterprises`, `enrollment_tokens`, `policies`,
  `devices` (SimDevice), `operations`, `subscriptions`.
- Pub/Sub: subscriptions pull / acknowledge / modifyAckDeadline / get / create (PUT);
  `create_subscription(topic) -> name`; an unacked message is delivered again once
  `ack_deadline_seconds` (default 10, read at each pull; a subscription created by PUT with
  its own ackDeadlineSeconds keeps that) have passed on the simulator's clock (`advance(seconds)`
  moves that clock forward, so tests need not sleep). A pull with nothing to deliver answers `{}`
  as Pub/Sub does. Notifications (data = base64 JSON of the Device, or of the Operation for
  COMMAND; attributes {"notificationType"}) go to the enterprise's pubsubTopic for the types in
  enabledNotificationTypes; a topic nobody subscribed to drops them, as Pub/Sub does.
- Device side: `enroll_device(token_value, serial=None (a fresh "R52T…" each time; the same
  serial again fills previousDeviceNames), model="SM-T636B", android_version="14", imei=None,
  management_mode="DEVICE_OWNER") -> device name` (ENROLLMENT then STATUS_REPORT),
  `report_status(device_name, **changes)` (passcode_set, installed_apps {package: version},
  removed_apps [...], key_pair_aliases [...], battery_level, device_posture,
  security_patch_level, android_version, encrypted, adb_enabled, fields {raw Device fields})
  → STATUS_REPORT, `report_usage_logs(device_name, events)` → USAGE_LOGS (when the policy's
  usageLog enables logging), `run_device(device_name)` (re-applies a changed policy or state,
  executes the pending commands: LOCK, RESET_PASSWORD, REBOOT, START/STOP_LOST_MODE,
  CLEAR_APP_DATA, RELINQUISH_OWNERSHIP, WIPE; COMMAND notifications; returns the operation names
  it finished),
  `fail_next_command(device_name, code="UNKNOWN", message=...)` (code: a Command.errorCode name
  or a google.rpc code number), `set_rate_limit(n, retry_after=1)` (next n calls → 429 with
  Retry-After), `fail_next(status=503, times=1)`, `unavailable_packages` (apps the device cannot
  install: APP_NOT_INSTALLED / NOT_FOUND).
- What the device reports follows the policy's statusReportingSettings (softwareInfo,
  applicationReports, memoryInfo, networkInfo, deviceSettings, powerManagementEvents, displays
  only when enabled; hardwareInfo and securityPosture always), as the discovery document says.
  The discovery document's Device has no lost-mode field: lost mode shows as appliedState LOST,
  and the operation's metadata carries startLostModeStatus / stopLostModeStatus (SUCCESS,
  ALREADY_IN_LOST_MODE, NOT_IN_LOST_MODE). RELINQUISH_OWNERSHIP, as on real devices, only works on a
  work profile of a company-owned device (management_mode PROFILE_OWNER): on a fully managed
  device the operation ends with errorCode MANAGEMENT_MODE (FAILED_PRECONDITION). RESET_PASSWORD
  with a password the policy's password constraints refuse (an empty one under any required
  quality, too short, wrong kind of characters) ends with errorCode INVALID_VALUE, as
  resetPasswordWithToken refuses it on the device. A command the device runs after its
  `duration` (default 600s) ends with DEADLINE_EXCEEDED (code 4). Wi-Fi: an enterprise network
  without DomainSuffixMatch, a KeyPairAlias the device does not hold (report_status
  key_pair_aliases=[...] installs one) or a client PKCS#12 it cannot read is non-compliance.
- `now()` is the simulator's clock (real time + `advance`); it also expires access tokens
  (one hour), enrollment tokens and commands.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.support.amapi_schema import (
    AMAPI,
    PUBSUB,
    deprecated_uses,
    discovery_document,
    schema_problems,
)
from tests.support.amapi_sim_auth import (
    CLOUD_PLATFORM_SCOPE,
    JWT_BEARER,
    PUBSUB_SCOPE,
    TokenRefused,
    service_account_key,
    verify_assertion,
)
from tests.support.amapi_sim_device import (
    SimDevice,
    apply_policy,
    device_json,
    judge,
    password_problem,
    rfc3339,
)
from tests.support.amapi_sim_policy import policy_problems as google_policy_problems
from tests.support.amapi_sim_routes import Route, match, path_problems, query_problems
from tests.support.loopback_http import QuietHandler, ServiceServer

COMMAND_TYPE = "type.googleapis.com/google.android.devicemanagement.v1.Command"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
DPC_COMPONENT = "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver"
# Android Device Policy's signing-certificate checksum, as Google's provisioning docs publish it.
DPC_CHECKSUM = "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg"
DPC_DOWNLOAD = "https://play.google.com/managed/downloadManagingApp?identifier=setup"
TOKEN_LIFETIME = 3600

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}
# Command.errorCode → google.rpc.Code of the operation's error.
_ERROR_CODES = {"UNKNOWN": 2, "API_LEVEL": 9, "MANAGEMENT_MODE": 9, "INVALID_VALUE": 3, "UNSUPPORTED": 12}


class ApiError(Exception):
    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


class RecordedRequest(NamedTuple):
    method: str
    path: str
    params: dict[str, list[str]]
    body: Any


@dataclass
class _Message:
    data: dict[str, Any]
    notification_type: str
    message_id: str
    publish_time: float
    visible_at: float = 0.0
    deliveries: int = 0
    ack_ids: set[str] = field(default_factory=set)


@dataclass
class _Subscription:
    name: str
    topic: str
    ack_deadline_seconds: float | None  # None: the simulator's ack_deadline_seconds at pull time
    messages: list[_Message] = field(default_factory=list)


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _duration_seconds(value: str | None, default: float) -> float:
    if not value:
        return default
    return float(value.rstrip("s"))


class AmapiSimulator:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._server: ServiceServer | None = None
        self._thread: threading.Thread | None = None
        self.violations: list[str] = []
        # Valid but deprecated fields and enum values a client sent (not violations).
        self.deprecations: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.wiped: dict[str, dict[str, Any]] = {}
        self.unavailable_packages: set[str] = set()
        self.ack_deadline_seconds = 10
        self.clock_offset = 0.0
        self._accounts: dict[str, str] = {}  # client_email → project_id
        self._tokens: dict[str, tuple[float, set[str], str]] = {}  # expiry, scopes, project
        self._enterprise_projects: dict[str, str] = {}
        self._signups: dict[str, dict[str, Any]] = {}
        self._enterprise_tokens: dict[str, str] = {}  # enterpriseToken → signup name
        self.enterprises: dict[str, dict[str, Any]] = {}
        self.enrollment_tokens: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, SimDevice] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, list[str]] = {}  # device → operation names not yet run
        self._command_failures: dict[str, list[tuple[str, int, str]]] = {}
        self._serial_names: dict[str, list[str]] = {}
        self.subscriptions: dict[str, _Subscription] = {}
        self._rate_limited = 0
        self._retry_after = 1
        self._failures: list[int] = []
        self._counter = 7_000_000_000

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> AmapiSimulator:
        service_account_key()  # generated before the first request, once per session
        self._server = ServiceServer(("127.0.0.1", 0), _Handler)
        self._server.service = self
        # A short poll interval: stop() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> AmapiSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "the simulator is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + "/androidmanagement/v1"

    @property
    def pubsub_url(self) -> str:
        return self.url + "/pubsub/v1"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    # -- test controls --------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Moves the simulator's clock (ack deadlines, token and command expiry) forward."""
        with self._lock:
            self.clock_offset += seconds

    def service_account_info(self, project_id: str = "hikeshi-test") -> dict[str, str]:
        key = service_account_key()
        email = f"hikeshi-mdm@{project_id}.iam.gserviceaccount.com"
        with self._lock:
            self._accounts[email] = project_id
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key.key_id,
            "private_key": key.private_pem,
            "client_email": email,
            "client_id": "104" + str(abs(hash(email)) % 10**18).rjust(18, "0"),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_url,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
            + email.replace("@", "%40"),
            "universe_domain": "googleapis.com",
        }

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def set_rate_limit(self, n: int, retry_after: int = 1) -> None:
        with self._lock:
            self._rate_limited = n
            self._retry_after = retry_after

    def fail_next(self, status: int = 503, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def complete_signup(self, signup_url_name: str) -> str:
        """The admin finishes Google's signup page: the enterpriseToken of the callback URL."""
        with self._lock:
            if signup_url_name not in self._signups:
                raise KeyError(signup_url_name)
            token = "EAH" + _random(string.ascii_letters + string.digits, 40)
            self._enterprise_tokens[token] = signup_url_name
            return token

    def create_subscription(self, topic: str, name: str | None = None) -> str:
        project = topic.split("/")[1]
        with self._lock:
            name = name or f"projects/{project}/subscriptions/hikeshi-{len(self.subscriptions) + 1}"
            self.subscriptions[name] = _Subscription(name, topic, None)
            return name

    def fail_next_command(self, device_name: str, code: str | int = "UNKNOWN", message: str = "") -> None:
        if isinstance(code, int):
            error_code, rpc = "UNKNOWN", code
        else:
            error_code, rpc = code, _ERROR_CODES.get(code, 2)
        with self._lock:
            self._command_failures.setdefault(device_name, []).append(
                (error_code, rpc, message or f"The command failed on the device ({error_code}).")
            )

    # -- device side ----------------------------------------------------------------------------

    def enroll_device(
        self,
        token_value: str,
        serial: str | None = None,
        model: str = "SM-T636B",
        android_version: str = "14",
        imei: str | None = None,
        management_mode: str = "DEVICE_OWNER",
    ) -> str:
        """A tablet scans the QR code of `token_value` and enrolls: ENROLLMENT, then STATUS_REPORT."""
        with self._lock:
            now = self.now()
            token = next((t for t in self.enrollment_tokens.values() if t["value"] == token_value), None)
            if token is None:
                raise ValueError("no such enrollment token (deleted, used or never created)")
            if now > token["_expires"]:
                raise ValueError("the enrollment token has expired")
            if token["policyName"] not in self.policies:
                # Android Device Policy stops setup with an error: there is nothing to apply.
                raise ValueError(f"the enrollment token's policy {token['policyName']} does not exist")
            enterprise = token["name"].split("/enrollmentTokens/")[0]
            name = f"{enterprise}/devices/{secrets.token_hex(8)}"
            serial = serial or "R52T" + _random(string.ascii_uppercase + string.digits, 7)
            device = SimDevice(
                name=name,
                serial=serial,
                model=model,
                android_version=android_version,
                imei=imei,
                enrolled_at=now,
                enrollment_token_name=token["name"],
                enrollment_token_data=token.get("additionalData"),
                policy_name=token["policyName"],
                management_mode=management_mode,
                ownership="COMPANY_OWNED",
                previous_names=list(self._serial_names.get(serial, [])),
                last_status_report=now,
            )
            self._serial_names.setdefault(serial, []).append(name)
            self.devices[name] = device
            if token.get("oneTimeOnly"):
                del self.enrollment_tokens[token["name"]]
            policy = self.policies[device.policy_name]
            # Enrolled but not yet provisioned (appliedState PROVISIONING), then the policy applied.
            self._notify(enterprise, "ENROLLMENT", device_json(device, policy, now))
            apply_policy(device, policy, unavailable=self.unavailable_packages, now=now)
            self._status_report(device)
            return name

    def report_status(self, device_name: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            device = self._device(device_name)
            for key, value in changes.items():
                if key == "installed_apps":
                    for package, version in value.items():
                        device.installed[package] = version
                        device.removed.discard(package)
                elif key == "removed_apps":
                    for package in value:
                        if device.installed.pop(package, None) is not None:
                            device.removed.add(package)
                elif key == "key_pair_aliases":
                    device.key_pair_aliases.update(value)
                elif key == "fields":
                    device.extra.update(value)
                elif key in (
                    "passcode_set",
                    "battery_level",
                    "device_posture",
                    "security_patch_level",
                    "android_version",
                    "encrypted",
                    "adb_enabled",
                    "development_settings",
                    "unknown_sources",
                ):
                    setattr(device, key, value)
                else:
                    raise TypeError(f"report_status does not know {key!r}")
            device.last_status_report = self.now()
            judge(device, self.policies.get(device.policy_name, {}), unavailable=self.unavailable_packages)
            return self._status_report(device)

    def report_usage_logs(self, device_name: str, events: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The device uploads a batch of usage log events (USAGE_LOGS), if its policy's usageLog
        enables logging at all (None otherwise: nothing is logged). Each event is a
        UsageLogEvent; eventId and eventTime are filled in when missing."""
        with self._lock:
            device = self._device(device_name)
            policy = self.policies.get(device.policy_name, {})
            if not (policy.get("usageLog") or {}).get("enabledLogTypes"):
                return None
            now = self.now()
            batch = {
                "device": device_name,
                "retrievalTime": rfc3339(now),
                "usageLogEvents": [
                    {"eventId": str(self._next_id()), "eventTime": rfc3339(now), **event} for event in events
                ],
            }
            self._notify(device_name.split("/devices/")[0], "USAGE_LOGS", batch)
            return batch

    def _next_id(self) -> int:
        self._counter += 1
        return self._counter

    def run_device(self, device_name: str) -> list[str]:
        """The tablet comes online: syncs its policy, runs its pending commands in order."""
        with self._lock:
            device = self._device(device_name)
            now = self.now()
            policy = self.policies.get(device.policy_name)
            changed = device.applied_state != device.state
            device.applied_state = device.state  # an admin's DISABLED / ACTIVE takes effect
            if policy is not None and (
                device.applied_policy_name != policy["name"]
                or device.applied_policy_version != policy["version"]
            ):
                apply_policy(device, policy, unavailable=self.unavailable_packages, now=now)
                changed = True
            if changed:
                device.last_status_report = now
                self._status_report(device)
            finished = []
            for op_name in self._pending.pop(device_name, []):
                operation = self.operations[op_name]
                self._execute(device, operation, now)
                finished.append(op_name)
                enterprise = device_name.split("/devices/")[0]
                self._notify(enterprise, "COMMAND", self._operation_json(operation))
                if device_name not in self.devices:  # wiped or relinquished by the command
                    break
            return finished

    def _execute(self, device: SimDevice, operation: dict[str, Any], now: float) -> None:
        command = operation["metadata"]
        created = operation["_created"]
        operation["done"] = True
        failures = self._command_failures.get(device.name)
        if failures:
            error_code, rpc, message = failures.pop(0)
            self._fail(operation, error_code, rpc, message)
            return
        if now > created + _duration_seconds(command.get("duration"), 600):
            operation["error"] = {"code": 4, "message": "The command expired before the device ran it."}
            return
        kind = command["type"]
        if kind == "LOCK":
            device.locked_times += 1
        elif kind == "RESET_PASSWORD":
            refused = password_problem(
                self.policies.get(device.policy_name, {}), command.get("newPassword", "")
            )
            if refused:
                self._fail(operation, "INVALID_VALUE", 3, f"RESET_PASSWORD refused by the device: {refused}.")
                return
            device.passcode_set = bool(command.get("newPassword"))
            if "LOCK_NOW" in command.get("resetPasswordFlags", []):
                device.locked_times += 1
        elif kind == "REBOOT":
            device.power_events.append({"eventType": "BOOT_COMPLETED", "createTime": rfc3339(now)})
        elif kind == "START_LOST_MODE":
            if device.lost_mode is not None:
                command["startLostModeStatus"] = {"status": "ALREADY_IN_LOST_MODE"}
            else:
                device.lost_mode = dict(command.get("startLostModeParams", {}))
                command["startLostModeStatus"] = {"status": "SUCCESS"}
        elif kind == "STOP_LOST_MODE":
            if device.lost_mode is None:
                command["stopLostModeStatus"] = {"status": "NOT_IN_LOST_MODE"}
            else:
                device.lost_mode = None
                command["stopLostModeStatus"] = {"status": "SUCCESS"}
        elif kind == "CLEAR_APP_DATA":
            packages = command.get("clearAppsDataParams", {}).get("packageNames", [])
            command["clearAppsDataStatus"] = {
                "results": {
                    p: {"clearingResult": "SUCCESS" if p in device.installed else "APP_NOT_FOUND"}
                    for p in packages
                }
            }
        elif kind == "RELINQUISH_OWNERSHIP":
            if device.management_mode != "PROFILE_OWNER":
                self._fail(
                    operation,
                    "MANAGEMENT_MODE",
                    9,
                    "RELINQUISH_OWNERSHIP needs a work profile on a company-owned device.",
                )
                return
            self._remove_device(device, {"relinquished": True})
        elif kind == "WIPE":
            params = command.get("wipeParams", {})
            self._remove_device(
                device,
                {
                    "wipeDataFlags": list(params.get("wipeDataFlags", [])),
                    "wipeReasonMessage": (params.get("wipeReason") or {}).get("defaultMessage"),
                },
            )
        else:
            self._fail(operation, "UNSUPPORTED", 12, f"{kind} is not supported by this device.")
            return
        operation["response"] = {"@type": EMPTY_TYPE}
        if device.name in self.devices:
            judge(device, self.policies.get(device.policy_name, {}), unavailable=self.unavailable_packages)
            device.last_status_report = now
            self._status_report(device)

    @staticmethod
    def _fail(operation: dict[str, Any], error_code: str, rpc: int, message: str) -> None:
        operation["done"] = True
        operation["metadata"]["errorCode"] = error_code
        operation["error"] = {"code": rpc, "message": message}

    def _remove_device(self, device: SimDevice, record: dict[str, Any]) -> None:
        """The device is gone from the server; its last report says DELETED."""
        policy = self.policies.get(device.policy_name, {})
        final = device_json(device, policy, self.now())
        final["state"] = final["appliedState"] = "DELETED"
        self.wiped[device.name] = record
        del self.devices[device.name]
        self._pending.pop(device.name, None)
        self._notify(device.name.split("/devices/")[0], "STATUS_REPORT", final)

    def _status_report(self, device: SimDevice) -> dict[str, Any]:
        body = device_json(device, self.policies.get(device.policy_name, {}), self.now())
        self._notify(device.name.split("/devices/")[0], "STATUS_REPORT", body)
        return body

    def _device(self, name: str) -> SimDevice:
        device = self.devices.get(name)
        if device is None:
            raise KeyError(f"no device {name}")
        return device

    # -- Pub/Sub --------------------------------------------------------------------------------

    def _notify(self, enterprise_name: str, kind: str, resource: dict[str, Any]) -> None:
        enterprise = self.enterprises.get(enterprise_name)
        schema = {"COMMAND": "Operation", "USAGE_LOGS": "BatchUsageLogEvents"}.get(kind, "Device")
        for problem in schema_problems(resource, schema, strict=True, where=f"{kind} notification"):
            self.violations.append(problem)
        if not enterprise or not enterprise.get("pubsubTopic"):
            return
        if kind not in enterprise.get("enabledNotificationTypes", []):
            return
        now = self.now()
        for subscription in self.subscriptions.values():
            if subscription.topic == enterprise["pubsubTopic"]:
                self._counter += 1
                subscription.messages.append(_Message(resource, kind, str(self._counter), now))

    # -- HTTP -----------------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query, keep_blank_values=True)
        url_path = unquote(parts.path)  # Google accepts ":verb" written as %3A too
        if url_path == "/token":
            return self._token(method, raw)
        if url_path.startswith("/androidmanagement/"):
            document, path = AMAPI, url_path.removeprefix("/androidmanagement/")
        elif url_path.startswith("/pubsub/"):
            document, path = PUBSUB, url_path.removeprefix("/pubsub/")
        else:
            return _json(404, ApiError(404, f"The requested URL {url_path} was not found.").body())
        with self._lock:
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            self.requests.append(RecordedRequest(method, path, query, body))
            try:
                status, answer = self._api(document, method, path, query, headers, body)
            except ApiError as error:
                extra = {}
                if error.code == 429:
                    extra["Retry-After"] = str(self._retry_after)
                if error.code == 401:
                    extra["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
                return _json(error.code, error.body(), extra)
            return _json(status, answer)

    def _api(
        self,
        document: str,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, Any]]:
        scopes, project = self._bearer(headers)
        if self._failures:
            status = self._failures.pop(0)
            raise ApiError(status, "The service is currently unavailable.")
        if self._rate_limited > 0:
            self._rate_limited -= 1
            raise ApiError(429, "Quota exceeded for quota metric 'Queries' of service.")
        route, known = match(document, method, path)
        if route is None:
            # Google's front end answers an unknown path, or a verb the path has not, with 404.
            raise ApiError(404, f"Method not found: {method} {path}" if known else f"{path} not found.")
        if not set(route.scopes) & scopes:
            raise ApiError(403, "Request had insufficient authentication scopes.")
        params = route.path_params(path)
        self._check_project(project, params, query)
        problems = path_problems(route, params) + query_problems(route, query)
        if isinstance(body, str):
            problems.append("Invalid JSON payload received.")
        elif route.request:
            if body is None:
                body = {}
            elif "json" not in headers.get("content-type", ""):
                problems.append(f"Content-Type {headers.get('content-type')!r} is not application/json.")
            problems += [
                f"Invalid JSON payload received. {p}"
                for p in schema_problems(body, route.request, document=route.document)
            ]
            problems += _mask_problems(route, query)
            self.deprecations += [
                f"{method} {path}: {d}" for d in deprecated_uses(body, route.request, document=route.document)
            ]
        elif body not in (None, {}):
            problems.append(f"{route.method_id} takes no request body.")
        if problems:
            for problem in problems:
                self.violations.append(f"{method} {path}: {problem}")
            raise ApiError(400, "; ".join(problems))
        handler = _HANDLERS.get(route.method_id)
        if handler is None:
            self.violations.append(f"{method} {path}: {route.method_id} is not simulated")
            raise ApiError(501, f"{route.method_id} is not implemented by the simulator.")
        status, answer = handler(self, Call(route, params, _flat_query(route, query), body, project))
        if route.response:
            for problem in schema_problems(answer, route.response, document=route.document, strict=True):
                self.violations.append(f"response to {method} {path}: {problem}")
        return status, answer

    def _check_project(self, project: str, params: dict[str, str], query: dict[str, list[str]]) -> None:
        """A service account reaches only its own project's enterprises and subscriptions."""
        owners = [v[-1] for k, v in query.items() if k == "projectId"]
        for value in params.values():
            if value.startswith("enterprises/"):
                owner = self._enterprise_projects.get("/".join(value.split("/")[:2]))
                if owner:
                    owners.append(owner)
            elif value.startswith("projects/"):
                owners.append(value.split("/")[1])
        if any(owner != project for owner in owners):
            raise ApiError(403, "The caller does not have permission")

    def _bearer(self, headers: dict[str, str]) -> tuple[set[str], str]:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        entry = self._tokens.get(token)
        if not token or entry is None or entry[0] < self.now():
            raise ApiError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
            )
        scopes = set(entry[1])
        if CLOUD_PLATFORM_SCOPE in scopes:
            scopes.add(PUBSUB_SCOPE)
        return scopes, entry[2]

    def _token(self, method: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "POST only"})
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            return _json(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})
        with self._lock:
            try:
                assertion = form.get("assertion", "")
                claims = _peek_claims(assertion)
                if claims.get("iss") not in self._accounts:
                    raise TokenRefused("invalid_grant", "Invalid grant: account not found")
                claims = verify_assertion(
                    assertion,
                    service_account_key(),
                    client_email=str(claims["iss"]),
                    token_uri=self.token_url,
                    now=time.time(),
                )
            except TokenRefused as refused:
                self.violations.append(f"token refused: {refused.description}")
                return _json(400, {"error": refused.error, "error_description": refused.description})
            access = "ya29.c." + secrets.token_urlsafe(48)
            self._tokens[access] = (
                self.now() + TOKEN_LIFETIME,
                set(claims["scope"].split()),
                self._accounts[str(claims["iss"])],
            )
        return _json(200, {"access_token": access, "expires_in": TOKEN_LIFETIME - 1, "token_type": "Bearer"})

    # -- resources ------------------------------------------------------------------------------

    def _enterprise(self, name: str) -> dict[str, Any]:
        enterprise = self.enterprises.get(name)
        if enterprise is None:
            raise ApiError(404, f"Requested entity was not found: {name}")
        return enterprise

    def _operation_json(self, operation: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in operation.items() if not k.startswith("_")}

    def _full_policy_name(self, enterprise: str, name: str | None) -> str:
        if not name:
            return f"{enterprise}/policies/default"
        return name if "/" in name else f"{enterprise}/policies/{name}"


def _peek_claims(assertion: str) -> dict[str, Any]:
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise TokenRefused("invalid_request", "Invalid JWT.") from exc
    if not isinstance(claims, dict):
        raise TokenRefused("invalid_request", "Invalid JWT.")
    return claims


def _mask_problems(route: Route, query: dict[str, list[str]]) -> list[str]:
    """updateMask names fields of the request's schema (top-level part of each path)."""
    if route.request is None or "updateMask" not in query:
        return []
    properties = discovery_document(route.document)["schemas"][route.request]["properties"]
    names = [m.strip() for value in query["updateMask"] for m in value.split(",") if m.strip()]
    return [
        f"updateMask names {n!r}, not a field of {route.request}"
        for n in names
        if n.split(".")[0] not in properties
    ]


def _flat_query(route: Route, query: dict[str, list[str]]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, values in query.items():
        spec = route.parameters.get(name, {})
        flat[name] = values if spec.get("repeated") else values[-1]
    return flat


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    out = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
    return status, out, json.dumps(body, ensure_ascii=False).encode()


def _page(items: list[dict[str, Any]], query: dict[str, Any], key: str, default: int = 10) -> dict[str, Any]:
    size = int(query.get("pageSize") or default)
    if size <= 0:
        size = default
    size = min(size, 100)
    start = 0
    token = query.get("pageToken")
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
        except ValueError as exc:
            raise ApiError(400, "Invalid page token.") from exc
    answer: dict[str, Any] = {}
    if items[start : start + size]:
        answer[key] = items[start : start + size]
    if start + size < len(items):
        answer["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode()
    return answer


Answer = tuple[int, dict[str, Any]]


@dataclass
class Call:
    """One validated API call: path parameters, query (repeated ones as lists) and JSON body."""

    route: Route
    params: dict[str, str]
    query: dict[str, Any]
    body: Any
    project: str  # the Google Cloud project of the calling service account


def _signup_create(sim: AmapiSimulator, call: Call) -> Answer:
    if not call.query.get("callbackUrl"):
        raise ApiError(400, "callbackUrl is required.")
    if not call.query.get("projectId"):
        raise ApiError(400, "projectId is required.")
    name = "signupUrls/C" + secrets.token_hex(8)
    sim._signups[name] = {"projectId": call.query["projectId"], "callbackUrl": call.query["callbackUrl"]}
    url = "https://play.google.com/work/adminsignup?token=" + _random(
        string.ascii_letters + string.digits, 32
    )
    return 200, {"name": name, "url": url}


def _enterprise_create(sim: AmapiSimulator, call: Call) -> Answer:
    signup = call.query.get("signupUrlName")
    token = call.query.get("enterpriseToken")
    if not call.query.get("projectId"):
        raise ApiError(400, "projectId is required.")
    if not signup or not token or sim._enterprise_tokens.get(token) != signup:
        raise ApiError(400, "The enterprise token is invalid or does not belong to this signup URL.")
    if sim._signups[signup]["projectId"] != call.query["projectId"]:
        raise ApiError(400, "The signup URL was made for another project.")
    del sim._enterprise_tokens[token]
    name = "enterprises/LC0" + _random(string.ascii_lowercase + string.digits, 7)
    enterprise = {k: v for k, v in call.body.items() if k != "name"}
    enterprise.update(
        {
            "name": name,
            "enterpriseType": "MANAGED_GOOGLE_DOMAIN",
            "managedGoogleDomainType": "TYPE_TEAM",
        }
    )
    _check_topic(enterprise)
    sim.enterprises[name] = enterprise
    sim._enterprise_projects[name] = call.query["projectId"]
    return 200, dict(enterprise)


def _check_topic(enterprise: dict[str, Any]) -> None:
    topic = enterprise.get("pubsubTopic")
    if topic and not (topic.startswith("projects/") and "/topics/" in topic):
        raise ApiError(400, f"Invalid pubsubTopic {topic!r}: expected projects/{{project}}/topics/{{topic}}.")


def _enterprise_get(sim: AmapiSimulator, call: Call) -> Answer:
    return 200, dict(sim._enterprise(call.params["name"]))


def _enterprise_list(sim: AmapiSimulator, call: Call) -> Answer:
    if not call.query.get("projectId"):
        raise ApiError(400, "projectId is required.")
    items = [
        {"name": e["name"]} if call.query.get("view") == "BASIC" else dict(e)
        for e in sim.enterprises.values()
        if sim._enterprise_projects[e["name"]] == call.query["projectId"]
    ]
    return 200, _page(items, call.query, "enterprises")


def _enterprise_patch(sim: AmapiSimulator, call: Call) -> Answer:
    enterprise = sim._enterprise(call.params["name"])
    mask = [m for m in call.query.get("updateMask", "").split(",") if m]
    fields = mask or [k for k in call.body if k not in ("name", "enterpriseType")]
    changed = dict(enterprise)
    for name in fields:
        if name in call.body:
            changed[name] = call.body[name]
        else:
            changed.pop(name, None)
    _check_topic(changed)
    enterprise.clear()
    enterprise.update(changed)
    return 200, dict(enterprise)


def _enterprise_delete(sim: AmapiSimulator, call: Call) -> Answer:
    sim._enterprise(call.params["name"])
    del sim.enterprises[call.params["name"]]
    return 200, {}


def _token_create(sim: AmapiSimulator, call: Call) -> Answer:
    enterprise = call.params["parent"]
    sim._enterprise(enterprise)
    now = sim.now()
    try:
        seconds = _duration_seconds(call.body.get("duration"), 3600)
    except ValueError as exc:
        raise ApiError(400, "Invalid duration.") from exc
    if seconds < 60:
        raise ApiError(400, "The enrollment token duration must be at least one minute.")
    value = _random(string.ascii_uppercase, 20)
    token = {
        k: v for k, v in call.body.items() if k not in ("name", "value", "qrCode", "expirationTimestamp")
    }
    token.update(
        {
            "name": f"{enterprise}/enrollmentTokens/{secrets.token_urlsafe(30)}",
            "value": value,
            "policyName": sim._full_policy_name(enterprise, call.body.get("policyName")),
            "expirationTimestamp": rfc3339(now + seconds),
            "duration": f"{int(seconds)}s",
            "_expires": now + seconds,
        }
    )
    token["qrCode"] = json.dumps(
        {
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME": DPC_COMPONENT,
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM": DPC_CHECKSUM,
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION": DPC_DOWNLOAD,
            "android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE": {
                "com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN": value
            },
        }
    )
    sim.enrollment_tokens[token["name"]] = token
    return 200, _public(token)


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if not k.startswith("_")}


def _token_get(sim: AmapiSimulator, call: Call) -> Answer:
    token = sim.enrollment_tokens.get(call.params["name"])
    if token is None or token["_expires"] < sim.now():
        raise ApiError(404, f"Requested entity was not found: {call.params['name']}")
    return 200, _public(token)


def _token_list(sim: AmapiSimulator, call: Call) -> Answer:
    sim._enterprise(call.params["parent"])
    now = sim.now()
    items = [
        _public(t)
        for n, t in sim.enrollment_tokens.items()
        if n.startswith(call.params["parent"] + "/") and t["_expires"] >= now
    ]
    return 200, _page(items, call.query, "enrollmentTokens")


def _token_delete(sim: AmapiSimulator, call: Call) -> Answer:
    if sim.enrollment_tokens.pop(call.params["name"], None) is None:
        raise ApiError(404, f"Requested entity was not found: {call.params['name']}")
    return 200, {}


def _policy_patch(sim: AmapiSimulator, call: Call) -> Answer:
    name = call.params["name"]
    sim._enterprise(name.split("/policies/")[0])
    refused = google_policy_problems(call.body)
    if refused:
        for problem in refused:
            sim.violations.append(f"PATCH v1/{name}: {problem}")
        raise ApiError(400, "Invalid policy: " + "; ".join(refused))
    old = sim.policies.get(name, {})
    mask = [m for m in call.query.get("updateMask", "").split(",") if m]
    if mask:
        policy = dict(old)
        for field_name in mask:
            if field_name in call.body:
                policy[field_name] = call.body[field_name]
            else:
                policy.pop(field_name, None)
    else:
        policy = dict(call.body)
    policy["name"] = name
    policy["version"] = str(int(old.get("version", "0")) + 1)
    sim.policies[name] = policy
    return 200, dict(policy)


def _policy_get(sim: AmapiSimulator, call: Call) -> Answer:
    policy = sim.policies.get(call.params["name"])
    if policy is None:
        raise ApiError(404, f"Requested entity was not found: {call.params['name']}")
    return 200, dict(policy)


def _policy_list(sim: AmapiSimulator, call: Call) -> Answer:
    sim._enterprise(call.params["parent"])
    items = [dict(p) for n, p in sim.policies.items() if n.startswith(call.params["parent"] + "/")]
    return 200, _page(items, call.query, "policies")


def _policy_delete(sim: AmapiSimulator, call: Call) -> Answer:
    name = call.params["name"]
    if name not in sim.policies:
        raise ApiError(404, f"Requested entity was not found: {name}")
    users = [d.name for d in sim.devices.values() if d.policy_name == name]
    users += [t["name"] for t in sim.enrollment_tokens.values() if t["policyName"] == name]
    if users:
        raise ApiError(400, f"Policy {name} is in use by {users[0]}.", "FAILED_PRECONDITION")
    del sim.policies[name]
    return 200, {}


def _device_of(sim: AmapiSimulator, name: str) -> SimDevice:
    device = sim.devices.get(name)
    if device is None:
        raise ApiError(404, f"Requested entity was not found: {name}")
    return device


def _device_get(sim: AmapiSimulator, call: Call) -> Answer:
    device = _device_of(sim, call.params["name"])
    return 200, device_json(device, sim.policies.get(device.policy_name, {}), sim.now())


def _device_list(sim: AmapiSimulator, call: Call) -> Answer:
    sim._enterprise(call.params["parent"])
    now = sim.now()
    items = [
        device_json(d, sim.policies.get(d.policy_name, {}), now)
        for n, d in sim.devices.items()
        if n.startswith(call.params["parent"] + "/")
    ]
    return 200, _page(items, call.query, "devices")


def _device_patch(sim: AmapiSimulator, call: Call) -> Answer:
    device = _device_of(sim, call.params["name"])
    mask = [m for m in call.query.get("updateMask", "").split(",") if m] or [
        k for k in call.body if k != "name"
    ]
    for field_name in mask:
        if field_name == "state":
            if call.body.get("state") not in ("ACTIVE", "DISABLED"):
                raise ApiError(400, "state can only be set to ACTIVE or DISABLED.")
            device.state = call.body["state"]
        elif field_name == "policyName":
            device.policy_name = sim._full_policy_name(
                call.params["name"].split("/devices/")[0], call.body.get("policyName")
            )
        elif field_name == "disabledReason":
            device.disabled_reason = call.body.get("disabledReason")
        else:
            raise ApiError(400, f"Field {field_name} of a device cannot be updated.")
    return 200, device_json(device, sim.policies.get(device.policy_name, {}), sim.now())


def _device_delete(sim: AmapiSimulator, call: Call) -> Answer:
    device = _device_of(sim, call.params["name"])
    flags = [f for f in call.query.get("wipeDataFlags", []) if f != "WIPE_DATA_FLAG_UNSPECIFIED"]
    reason = call.query.get("wipeReasonMessage")
    if reason is not None and len(reason) > 200:
        raise ApiError(400, "wipeReasonMessage is longer than 200 characters.")
    sim._remove_device(device, {"wipeDataFlags": flags, "wipeReasonMessage": reason})
    return 200, {}


def _issue_command(sim: AmapiSimulator, call: Call) -> Answer:
    device = _device_of(sim, call.params["name"])
    kind = call.body.get("type")
    if kind in (None, "COMMAND_TYPE_UNSPECIFIED"):
        raise ApiError(400, "Command type must be specified.")
    if kind == "START_LOST_MODE":
        lost = call.body.get("startLostModeParams") or {}
        if not any(
            lost.get(k) for k in ("lostMessage", "lostPhoneNumber", "lostEmailAddress", "lostStreetAddress")
        ):
            raise ApiError(400, "startLostModeParams needs a message, phone number, e-mail or address.")
    if kind == "CLEAR_APP_DATA" and not (call.body.get("clearAppsDataParams") or {}).get("packageNames"):
        raise ApiError(400, "clearAppsDataParams.packageNames must not be empty.")
    if kind == "RESET_PASSWORD" and call.body.get("newPassword") and device.api_level < 26:
        raise ApiError(400, "RESET_PASSWORD with a password needs Android 8.0.")
    now = sim.now()
    command = {
        "@type": COMMAND_TYPE,
        **call.body,
        "createTime": rfc3339(now),
        "duration": call.body.get("duration", "600s"),
    }
    name = f"{device.name}/operations/{sim._next_id()}"
    operation: dict[str, Any] = {"name": name, "metadata": command, "_created": now}
    sim.operations[name] = operation
    sim._pending.setdefault(device.name, []).append(name)
    return 200, sim._operation_json(operation)


def _operation_get(sim: AmapiSimulator, call: Call) -> Answer:
    operation = sim.operations.get(call.params["name"])
    if operation is None:
        raise ApiError(404, f"Requested entity was not found: {call.params['name']}")
    return 200, sim._operation_json(operation)


def _operation_list(sim: AmapiSimulator, call: Call) -> Answer:
    prefix = call.params["name"] + "/"
    items = [sim._operation_json(o) for n, o in sim.operations.items() if n.startswith(prefix)]
    return 200, _page(items, call.query, "operations")


def _operation_cancel(sim: AmapiSimulator, call: Call) -> Answer:
    operation = sim.operations.get(call.params["name"])
    if operation is None:
        raise ApiError(404, f"Requested entity was not found: {call.params['name']}")
    device = call.params["name"].split("/operations/")[0]
    if call.params["name"] in sim._pending.get(device, []):
        sim._pending[device].remove(call.params["name"])
        operation["done"] = True
        operation["error"] = {"code": 1, "message": "The operation was cancelled."}
    return 200, {}


def _subscription(sim: AmapiSimulator, name: str) -> _Subscription:
    subscription = sim.subscriptions.get(name)
    if subscription is None:
        raise ApiError(404, f"Resource not found (resource={name.rsplit('/', 1)[-1]}).")
    return subscription


def _deadline(sim: AmapiSimulator, subscription: _Subscription) -> float:
    if subscription.ack_deadline_seconds is not None:
        return subscription.ack_deadline_seconds
    return sim.ack_deadline_seconds


def _pull(sim: AmapiSimulator, call: Call) -> Answer:
    subscription = _subscription(sim, call.params["subscription"])
    limit = call.body.get("maxMessages")
    if not isinstance(limit, int) or limit <= 0:
        raise ApiError(400, "maxMessages must be a positive integer.")
    now = sim.now()
    received: list[dict[str, Any]] = []
    for message in subscription.messages:
        if len(received) >= limit:
            break
        if message.visible_at > now:
            continue
        ack_id = secrets.token_urlsafe(24)
        message.ack_ids.add(ack_id)
        message.deliveries += 1
        message.visible_at = now + _deadline(sim, subscription)
        received.append(
            {
                "ackId": ack_id,
                "message": {
                    "data": base64.b64encode(json.dumps(message.data).encode()).decode(),
                    "attributes": {"notificationType": message.notification_type},
                    "messageId": message.message_id,
                    "publishTime": rfc3339(message.publish_time),
                },
            }
        )
    return 200, ({"receivedMessages": received} if received else {})


def _acknowledge(sim: AmapiSimulator, call: Call) -> Answer:
    subscription = _subscription(sim, call.params["subscription"])
    ack_ids = set(call.body.get("ackIds") or [])
    if not ack_ids:
        raise ApiError(400, "ackIds must not be empty.")
    subscription.messages = [m for m in subscription.messages if not (m.ack_ids & ack_ids)]
    return 200, {}


def _modify_ack_deadline(sim: AmapiSimulator, call: Call) -> Answer:
    subscription = _subscription(sim, call.params["subscription"])
    ack_ids = set(call.body.get("ackIds") or [])
    seconds = call.body.get("ackDeadlineSeconds")
    if not ack_ids or not isinstance(seconds, int) or not 0 <= seconds <= 600:
        raise ApiError(400, "ackIds and ackDeadlineSeconds (0..600) are required.")
    for message in subscription.messages:
        if message.ack_ids & ack_ids:
            message.visible_at = sim.now() + seconds
    return 200, {}


def _subscription_get(sim: AmapiSimulator, call: Call) -> Answer:
    subscription = _subscription(sim, call.params["subscription"])
    return 200, {
        "name": subscription.name,
        "topic": subscription.topic,
        "ackDeadlineSeconds": max(10, int(_deadline(sim, subscription))),
        "state": "ACTIVE",
    }


def _subscription_create(sim: AmapiSimulator, call: Call) -> Answer:
    name = call.params["name"]
    if name in sim.subscriptions:
        raise ApiError(409, "Resource already exists in the project.")
    topic = call.body.get("topic")
    if not isinstance(topic, str) or "/topics/" not in topic:
        raise ApiError(400, "topic is required.")
    sim.create_subscription(topic, name)
    if isinstance(call.body.get("ackDeadlineSeconds"), int):
        sim.subscriptions[name].ack_deadline_seconds = call.body["ackDeadlineSeconds"]
    return _subscription_get(
        sim, Call(call.route, {"subscription": name}, call.query, call.body, call.project)
    )


_HANDLERS = {
    "androidmanagement.signupUrls.create": _signup_create,
    "androidmanagement.enterprises.create": _enterprise_create,
    "androidmanagement.enterprises.get": _enterprise_get,
    "androidmanagement.enterprises.list": _enterprise_list,
    "androidmanagement.enterprises.patch": _enterprise_patch,
    "androidmanagement.enterprises.delete": _enterprise_delete,
    "androidmanagement.enterprises.enrollmentTokens.create": _token_create,
    "androidmanagement.enterprises.enrollmentTokens.get": _token_get,
    "androidmanagement.enterprises.enrollmentTokens.list": _token_list,
    "androidmanagement.enterprises.enrollmentTokens.delete": _token_delete,
    "androidmanagement.enterprises.policies.patch": _policy_patch,
    "androidmanagement.enterprises.policies.get": _policy_get,
    "androidmanagement.enterprises.policies.list": _policy_list,
    "androidmanagement.enterprises.policies.delete": _policy_delete,
    "androidmanagement.enterprises.devices.get": _device_get,
    "androidmanagement.enterprises.devices.list": _device_list,
    "androidmanagement.enterprises.devices.patch": _device_patch,
    "androidmanagement.enterprises.devices.delete": _device_delete,
    "androidmanagement.enterprises.devices.issueCommand": _issue_command,
    "androidmanagement.enterprises.devices.operations.get": _operation_get,
    "androidmanagement.enterprises.devices.operations.list": _operation_list,
    "androidmanagement.enterprises.devices.operations.cancel": _operation_cancel,
    "pubsub.projects.subscriptions.pull": _pull,
    "pubsub.projects.subscriptions.acknowledge": _acknowledge,
    "pubsub.projects.subscriptions.modifyAckDeadline": _modify_ack_deadline,
    "pubsub.projects.subscriptions.get": _subscription_get,
    "pubsub.projects.subscriptions.create": _subscription_create,
}


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment (no 40 ms Nagle/delayed-ACK stall per call).
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        service: AmapiSimulator = self.server.service
        status, out_headers, payload = service.handle(self.command, self.path, headers, raw)
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


@pytest.fixture
def amapi_sim() -> Iterator[AmapiSimulator]:
    with AmapiSimulator() as sim:
        yield sim
