"""One simulated iPad's request cycles on the Apple command channel, as a real iPad runs them.

The bodies are XML plists with Apple's DOCTYPE, as an iPad sends them, and each one is signed at
the moment it is sent (a detached CMS signature over the exact bytes, in `Mdm-Signature`), by
tests.support.apple_device.SimulatedIPad. A DeviceInformation answer carries the keys the command
asked for in `Queries`, with the values a supervised Wi-Fi iPad reports (no IMEI, MEID or ICCID:
a Wi-Fi model omits them, as Apple's schema says for cellular-only keys).
"""

from __future__ import annotations

import hashlib
import plistlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.apple_device import SimulatedIPad

EMPTY = "empty"
COMMAND = "command"
WORKLOADS = (EMPTY, COMMAND)

# Values a supervised Wi-Fi iPad (10th generation) reports for DeviceInformation queries.
_WIFI_IPAD_ANSWERS: dict[str, Any] = {
    "BatteryLevel": 0.87,
    "DeviceCapacity": 59.55,
    "AvailableDeviceCapacity": 41.2,
    "IsActivationLockEnabled": False,
    "IsDeviceLocatorServiceEnabled": False,
    "IsCloudBackupEnabled": False,
    "IsMDMLostModeEnabled": False,
    "IsRoaming": False,
    "TimeZone": "Asia/Tokyo",
    "SupplementalBuildVersion": "21F90",
}
_CELLULAR_ONLY = frozenset({"IMEI", "MEID", "ICCID", "CellularTechnology", "IsRoaming"})


def query_responses(ipad: SimulatedIPad, queries: list[str] | None) -> dict[str, Any]:
    """The QueryResponses for a DeviceInformation command asking `queries` (None: the usual set)."""
    known = {**ipad.device_information(), **_WIFI_IPAD_ANSWERS}
    known["WiFiMAC"] = _mac(ipad.udid, 0)
    known["BluetoothMAC"] = _mac(ipad.udid, 1)
    known["SoftwareUpdateDeviceID"] = "J272AP"
    known["CellularTechnology"] = 0
    asked = queries if queries is not None else list(known)
    return {key: known[key] for key in asked if key in known and key not in _CELLULAR_ONLY}


def _mac(udid: str, salt: int) -> str:
    digest = hashlib.sha256(f"{udid}:{salt}".encode()).hexdigest()[:12]
    return ":".join(digest[i : i + 2] for i in range(0, 12, 2))


@dataclass
class CycleOutcome:
    """Latency (seconds) of every request sent, and what went wrong, if anything."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    follow_ups: int = 0  # commands the server sent unasked, answered outside the timed cycle


def timed(outcome: CycleOutcome, send: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    response = send()
    outcome.latencies.append(time.perf_counter() - started)
    return response


def _body(response: Any) -> bytes:
    return response.data if hasattr(response, "data") else response.content


def empty_checkin(ipad: SimulatedIPad, client: Any, outcome: CycleOutcome) -> None:
    """Idle with nothing queued: the server answers 200 with an empty body."""
    response = timed(outcome, lambda: ipad.connect(client, ipad.idle_body()))
    body = _body(response)
    if response.status_code != 200 or body:
        outcome.errors.append(f"Idle answered HTTP {response.status_code} with {body[:120]!r}")


def command_cycle(ipad: SimulatedIPad, client: Any, outcome: CycleOutcome) -> None:
    """Idle → one DeviceInformation → Acknowledged with its answers → empty."""
    response = timed(outcome, lambda: ipad.connect(client, ipad.idle_body()))
    body = _body(response)
    if response.status_code != 200 or not body:
        outcome.errors.append(f"Idle answered HTTP {response.status_code} with {body[:120]!r}, no command")
        return
    message = plistlib.loads(body)
    command = message["Command"]
    if command.get("RequestType") != "DeviceInformation":
        outcome.errors.append(f"expected DeviceInformation, got {command.get('RequestType')!r}")
        return
    uuid = message["CommandUUID"]
    answer = ipad.result_body(
        uuid, "Acknowledged", QueryResponses=query_responses(ipad, command.get("Queries"))
    )
    response = timed(outcome, lambda: ipad.connect(client, answer))
    body = _body(response)
    # A supervised tablet's first inventory makes the server ask for more (the Activation Lock
    # bypass code, its MDM options): a real iPad answers them in the same session.
    # They are counted apart from the measured cycle, and only a first inventory brings them.
    limit = MAX_FOLLOW_UPS * len(outcome.latencies)
    while response.status_code == 200 and body and outcome.follow_ups < limit:
        outcome.follow_ups += 1
        follow_up = plistlib.loads(body)
        reply = ipad.result_body(follow_up["CommandUUID"], "Acknowledged", **_follow_up_answer(follow_up))
        response = ipad.connect(client, reply)
        body = _body(response)
    if response.status_code != 200 or body:
        outcome.errors.append(f"Acknowledged answered HTTP {response.status_code} with {body[:120]!r}")
        return
    outcome.acknowledged.append(uuid)


MAX_FOLLOW_UPS = 5


def _follow_up_answer(message: dict[str, Any]) -> dict[str, Any]:
    """What an iPad adds to its acknowledgement of a command the server sent unasked."""
    if message["Command"].get("RequestType") == "ActivationLockBypassCode":
        return {"ActivationLockBypassCode": "M0GK-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX"}
    return {}


CYCLES: dict[str, Callable[[SimulatedIPad, Any, CycleOutcome], None]] = {
    EMPTY: empty_checkin,
    COMMAND: command_cycle,
}
