"""A reference Android agent: a small client that speaks docs/android-agent-protocol.md exactly as
written, over real HTTP, for the integration tests.

It keeps what a real agent keeps (its key, its certificate, the policy it enforces, the results it
still has to report) and simulates what the tablet does when a command arrives: lock, lost mode,
locate, wipe. It imports nothing from the server: only the specification is shared.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

PREFIX = "/android/v1"
SCHEME = "HIKESHI-ANDROID-V1"


class AgentError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {"error": "?", "message": response.text}
        super().__init__(f"{response.status_code} {body.get('error')}: {body.get('message')}")
        self.status = response.status_code
        self.body = body


@dataclass
class TabletState:
    """What the simulated tablet looks like to its user."""

    locked: bool = False
    lock_message: str | None = None
    lost_mode: bool = False
    lost_message: str | None = None
    lost_phone: str | None = None
    rebooted: int = 0
    lock_task: bool = False  # in lock-task mode on the lost-mode activity (section 10.1)
    home_is_lost_mode: bool = False  # addPersistentPreferredActivity for HOME
    password_cleared: bool = False
    password: str | None = None  # the new password of the last RESET_PASSWORD
    password_flags: list[str] = field(default_factory=list)
    wiped: bool = False
    wipe_flags: list[str] = field(default_factory=list)
    wipe_call: str | None = None  # wipeDevice (API 34+) or wipeData
    relinquished: bool = False  # clearDeviceOwnerApp() was called
    cleared_packages: list[str] = field(default_factory=list)


class ReferenceAgent:
    def __init__(
        self,
        base_url: str,
        *,
        serial_number: str = "R52T1000001",
        model: str = "SM-X306B",
        manufacturer: str = "samsung",
        location: tuple[float, float, float] = (35.6812, 139.7671, 12.0),
        client: httpx.Client | None = None,
    ) -> None:
        self.http = client or httpx.Client(base_url=base_url, timeout=90)
        self.serial_number = serial_number
        self.model = model
        self.manufacturer = manufacturer
        self.location = location
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.certificate: x509.Certificate | None = None
        self.chain: list[x509.Certificate] = []
        self.device_id: int | None = None
        self.policy: dict[str, Any] | None = None
        self.policy_version: str | None = None
        self.unsupported: list[str] = []
        self.policy_reporting: dict[str, Any] = {}
        self.poll_interval: int | None = None
        self.wake: dict[str, Any] = {}  # the newest wake-up channels (section 7: "use the newest")
        self.packages: list[dict[str, Any]] = [
            {
                "package_name": "jp.hikeshi.agent",
                "label": "Hikeshi",
                "version_name": "1.0",
                "version_code": 1,
            },
            {"package_name": "com.android.settings", "label": "Settings", "system": True, "version_code": 34},
        ]
        self.tablet = TabletState()
        # A faulty agent that sends its position even where the policy does not allow it.
        self.send_location_anyway = False
        self.device_owner = True  # DevicePolicyManager.isDeviceOwnerApp(), reported in the inventory
        self.pending_results: list[dict[str, Any]] = []
        self.executed: set[str] = set()
        self.received: list[dict[str, Any]] = []
        self.policies_received = 0
        self._send_inventory = True
        self._wipe_id: str | None = None
        self._relinquish_id: str | None = None
        self.sdk_int = 34  # Build.VERSION.SDK_INT
        # Section 7.2: the key pairs generated for Wi-Fi (generateKeyPair), their certificates
        # (setKeyPairCertificate) and whether the Wi-Fi framework may use them (grantKeyPairToWifiAuth).
        self.protected_storage: dict[str, Any] = {}  # createDeviceProtectedStorageContext()
        self.keychain: dict[str, tuple[rsa.RSAPrivateKey, list[x509.Certificate]]] = {}
        self.wifi_granted: set[str] = set()
        self.wifi_errors: dict[str, dict[str, Any]] = {}

    # -- enrollment ----------------------------------------------------------------------------

    def csr_pem(self) -> str:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.serial_number)]))
            .sign(self.key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def enroll(self, token: str, *, device_owner: bool = True) -> dict[str, Any]:
        body = {
            "enrollment_token": token,
            "csr": self.csr_pem(),
            "device_owner": device_owner,
            "hardware": self.hardware(),
            "agent": {"package": "jp.hikeshi.agent", "version_name": "1.0.0", "version_code": 100},
        }
        response = self.http.post(f"{PREFIX}/enroll", json=body)
        if response.status_code != 201:
            raise AgentError(response)
        answer = response.json()
        self.device_id = answer["device_id"]
        self.certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
        self.chain = [x509.load_pem_x509_certificate(p.encode()) for p in answer["certificate_chain"]]
        self.poll_interval = answer["poll_interval_seconds"]
        self.wake = answer.get("wake") or {}
        self._take_policy(answer["policy"])
        return answer

    def hardware(self) -> dict[str, Any]:
        return {
            "serial_number": self.serial_number,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "device_name": f"Tablet {self.serial_number}",
        }

    # -- signed requests -----------------------------------------------------------------------

    def signed_headers(
        self, method: str, path: str, body: bytes, *, timestamp: int | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """Section 4: a fresh nonce per request, signed with the timestamp (now unless given)."""
        assert self.certificate is not None, "enroll first"
        sent = str(int(time.time()) if timestamp is None else timestamp)
        once = nonce or secrets.token_urlsafe(16)
        signed = "\n".join((SCHEME, method, path, sent, once, hashlib.sha256(body).hexdigest())).encode()
        signature = self.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        return {
            "Hikeshi-Certificate": self.certificate.fingerprint(hashes.SHA256()).hex(),
            "Hikeshi-Timestamp": sent,
            "Hikeshi-Nonce": once,
            "Hikeshi-Signature": base64.b64encode(signature).decode(),
        }

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = self.signed_headers(method, path, body)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, path, content=body, headers=headers)

    # -- sync, wait ----------------------------------------------------------------------------

    def inventory(self) -> dict[str, Any]:
        latitude, longitude, accuracy = self.location
        inventory: dict[str, Any] = {
            "hardware": self.hardware(),
            "os": {
                "android_version": "14",
                "sdk_int": self.sdk_int,
                "build_id": "UP1A.231005.007",
                "security_patch": "2026-10-01",
            },
            "battery": {"level": 0.83, "charging": False},
            "storage": {"total_bytes": 128_000_000_000, "available_bytes": 64_000_000_000},
            "security": {
                "encryption": "active_per_user",
                "device_owner": self.device_owner,
                "password_set": True,
                "password_sufficient": True,
                "lost_mode": self.tablet.lost_mode,
            },
            "time_zone": "Asia/Tokyo",
            "packages": self.packages,
            "location": {"latitude": latitude, "longitude": longitude, "accuracy_m": accuracy},
        }
        if not self.policy_reporting.get("location") and not self.send_location_anyway:
            del inventory["location"]  # section 7: only where the unit's policy allows it
        return inventory

    def sync(self, *, inventory: bool | None = None) -> dict[str, Any]:
        """One sync: inventory (first time, when asked, or on request), results; then execute."""
        send_inventory = self._send_inventory if inventory is None else inventory
        payload: dict[str, Any] = {"policy_version": self.policy_version, "results": self.pending_results}
        if send_inventory:
            payload["inventory"] = self.inventory()
        response = self.request("POST", f"{PREFIX}/sync", payload)
        if response.status_code != 200:
            raise AgentError(response)
        # Reported and accepted: only now may the tablet act on what it reported (a wipe).
        reported, self.pending_results = self.pending_results, []
        self._send_inventory = False
        answer = response.json()
        if "policy" in answer:
            self._take_policy(answer["policy"])
        self.poll_interval = answer["poll_interval_seconds"]
        self.wake = answer.get("wake") or self.wake
        for command in answer["commands"]:
            self.received.append(command)
            if command["id"] not in self.executed:
                self.executed.add(command["id"])
                self.pending_results.append(self._execute(command))
        acknowledged = {r["command_id"] for r in reported if r["status"] == "acknowledged"}
        if self._wipe_id in acknowledged:
            self.tablet.wiped = True
            # Section 10: a device owner on API 34+ must call wipeDevice; before, wipeData.
            self.tablet.wipe_call = "wipeDevice" if self.sdk_int >= 34 else "wipeData"
        if self._relinquish_id in acknowledged:
            self.tablet.relinquished = True
        return answer

    def wait(self, timeout: int | None = None) -> bool:
        """Hold the long poll; True when the server says commands are waiting."""
        path = f"{PREFIX}/wait" + (f"?timeout={timeout}" if timeout is not None else "")
        response = self.request("GET", path)
        if response.status_code == 204:
            return False
        if response.status_code != 200:
            raise AgentError(response)
        return bool(response.json()["commands_pending"])

    # -- MQTT wake-up (section 9) ---------------------------------------------------------------

    @property
    def mqtt_account(self) -> dict[str, Any] | None:
        """The broker account the server handed over, or None (no broker: poll only)."""
        return self.wake.get("mqtt")

    def listen_mqtt(self, timeout: float = 10.0) -> MqttWakeListener:
        """Connect with the handed-over account and subscribe to the wake topic, as section 9 says."""
        account = self.mqtt_account
        assert account is not None, "the server handed over no MQTT account"
        assert self.device_id is not None
        return MqttWakeListener(account, self.device_id, timeout=timeout)

    def sync_on_wakeup(self, listener: MqttWakeListener, timeout: float = 15.0) -> dict[str, Any] | None:
        """Wait for a wake-up on MQTT and sync then; None when none arrived within `timeout`."""
        if listener.next_wakeup(timeout) is None:
            return None
        return self.sync()

    # -- commands ------------------------------------------------------------------------------

    def _take_policy(self, policy: dict[str, Any]) -> None:
        self.policy = policy["policy"]
        self.policy_version = policy["version"]
        self.unsupported = policy["unsupported"]
        self.policy_reporting = policy.get("reporting") or {}
        self.policies_received += 1
        self.provision_wifi_certificates()

    # -- Wi-Fi client certificates (section 7.2) ------------------------------------------------

    def _enter_lost_mode(self, params: dict[str, Any]) -> None:
        self.tablet.lost_message = params.get("message")  # setDeviceOwnerLockScreenInfo
        self.tablet.lost_phone = params.get("phone")
        self.tablet.home_is_lost_mode = True  # addPersistentPreferredActivity(HOME)
        self.tablet.lock_task = True  # setLockTaskPackages + startLockTask
        self.tablet.lost_mode = self.tablet.locked = True  # lockNow()

    def power_cycle(self) -> None:
        """The tablet restarts: everything in memory is gone; ACTION_LOCKED_BOOT_COMPLETED reads
        device-protected storage and, if lost, lost mode is entered again before anyone unlocks."""
        self.tablet.lock_task = self.tablet.home_is_lost_mode = self.tablet.lost_mode = False
        self.tablet.locked = True  # a restarted tablet is locked until its user unlocks it
        persisted = self.protected_storage.get("lost_mode")
        if persisted is not None:
            self._enter_lost_mode(persisted)

    def eap_tls_networks(self) -> list[dict[str, Any]]:
        onc = (self.policy or {}).get("openNetworkConfiguration") or {}
        return [
            network
            for network in onc.get("NetworkConfigurations") or []
            if ((network.get("WiFi") or {}).get("EAP") or {}).get("ClientCertType") == "KeyPairAlias"
        ]

    def provision_wifi_certificates(self) -> None:
        """Every EAP-TLS network's key pair alias gets a key made here and a certificate."""
        if self.sdk_int < 31:
            return  # no grantKeyPairToWifiAuth / setClientKeyPairAlias: EAP-TLS networks are skipped
        renew_before = datetime.now(UTC) + timedelta(days=30)
        for network in self.eap_tls_networks():
            alias = network["WiFi"]["EAP"]["ClientCertKeyPairAlias"]
            held = self.keychain.get(alias)
            if held is not None and held[1][0].not_valid_after_utc > renew_before:
                continue
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # generateKeyPair
            response = self.request_wifi_certificate(alias, key)
            if response.status_code != 201:
                self.wifi_errors[alias] = response.json()
                continue
            answer = response.json()
            chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in answer["certificate_chain"]]
            if answer["key_alias"] != alias or chain[0].public_key().public_numbers() != (
                key.public_key().public_numbers()
            ):
                raise AssertionError(f"the certificate for {alias} is not for the key generated for it")
            chain[0].verify_directly_issued_by(chain[1])
            self.keychain[alias] = (key, chain)  # setKeyPairCertificate(admin, alias, chain, false)
            self.wifi_granted.add(alias)  # grantKeyPairToWifiAuth(alias)

    def request_wifi_certificate(self, alias: str, key: rsa.RSAPrivateKey, **extra: Any) -> httpx.Response:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, alias)]))
            .sign(key, hashes.SHA256())
        )
        body = {"key_alias": alias, "csr": csr.public_bytes(serialization.Encoding.PEM).decode(), **extra}
        return self.request("POST", f"{PREFIX}/wifi-certificate", body)

    def wifi_network_resolves(self, network: dict[str, Any]) -> bool:
        """What WifiEnterpriseConfig.setClientKeyPairAlias needs: a key pair under the ONC's
        alias, with a certificate, granted to Wi-Fi."""
        alias = network["WiFi"]["EAP"]["ClientCertKeyPairAlias"]
        return alias in self.keychain and alias in self.wifi_granted

    def _execute(self, command: dict[str, Any]) -> dict[str, Any]:
        kind, params = command["type"], command["params"]
        result: dict[str, Any] = {"command_id": command["id"], "status": "acknowledged"}
        if kind == "LOCK":
            self.tablet.locked = True
            self.tablet.lock_message = params.get("message")
        elif kind == "START_LOST_MODE":
            # Section 10.1: persist first (device-protected storage), then lock task and lock.
            self.protected_storage["lost_mode"] = {"command_id": command["id"], **params}
            self._enter_lost_mode(params)
        elif kind == "STOP_LOST_MODE":
            self.protected_storage.pop("lost_mode", None)
            self.tablet.lost_mode = self.tablet.lock_task = self.tablet.home_is_lost_mode = False
        elif kind == "LOCATE":
            latitude, longitude, accuracy = self.location
            result["location"] = {
                "latitude": latitude,
                "longitude": longitude,
                "accuracy_m": accuracy,
                "time": "2026-11-23T03:00:00Z",
            }
        elif kind == "RESET_PASSWORD":
            # resetPasswordWithToken(admin, password or null, token, flags); LOCK_NOW: lockNow().
            self.tablet.password = params.get("password") or None
            self.tablet.password_cleared = self.tablet.password is None
            self.tablet.password_flags = list(params.get("flags", []))
            if "LOCK_NOW" in self.tablet.password_flags:
                self.tablet.locked = True
        elif kind == "REBOOT":
            self.tablet.rebooted += 1
        elif kind == "WIPE":
            # Acknowledge first; the tablet erases itself once the server has the acknowledgement.
            self.tablet.wipe_flags = list(params.get("flags", []))
            self._wipe_id = command["id"]
        elif kind == "REFRESH_INVENTORY":
            self._send_inventory = True
        elif kind == "CLEAR_APP_DATA":
            # clearApplicationUserData(admin, package, executor, listener), one per package.
            self.tablet.cleared_packages.extend(params["packages"])
        elif kind == "RELINQUISH_OWNERSHIP":
            # Like WIPE: acknowledged first, clearDeviceOwnerApp once the server has the answer.
            self._relinquish_id = command["id"]
        else:
            result = {
                "command_id": command["id"],
                "status": "error",
                "error": {"code": "unsupported", "message": f"{kind} is not supported"},
            }
        return result


class MqttWakeListener:
    """The agent's MQTT connection (section 9): username = device id and the password as handed
    over, client id `hikeshi-android-<device id>`, persistent session, the own topic at QoS 1.
    Every message on it is a wake-up; so is every (re)connection (the agent syncs after each)."""

    def __init__(self, account: dict[str, Any], device_id: int, *, timeout: float = 10.0) -> None:
        parts = urlsplit(account["url"])
        tls = parts.scheme == "mqtts"
        self.topic = account["topic"]
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.connections = 0
        self._subscribed = threading.Event()
        self.connect_result: Any = None
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"hikeshi-android-{device_id}",
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        self.client.username_pw_set(account["username"], account["password"])
        if tls:
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, _mid, _codes, _p: self._subscribed.set()
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.connect(parts.hostname or "", parts.port or (8883 if tls else 1883), keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise AssertionError(f"could not subscribe to {self.topic}: {self.connect_result}")

    def _on_connect(self, client: paho.Client, _u: Any, _flags: Any, reason_code: Any, _p: Any) -> None:
        self.connect_result = reason_code
        if not reason_code.is_failure:
            self.connections += 1
            client.subscribe(self.topic, qos=1)

    def next_wakeup(self, timeout: float = 15.0) -> paho.MQTTMessage | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
