"""A device's declaration set for Declarative Device Management: what Hikeshi declares, each
declaration's ServerToken (a hash of its content, so a changed declaration has a new token and an
unchanged one keeps it) and the set's DeclarationsToken (a hash of every identifier and token).

The set, for a device whose unit enforces an OS version with a due date:
- the management declaration subscribing to the software update status items,
- the softwareupdate.enforcement.specific configuration (target, build, local date-time, details),
- one simple activation that activates both.
Without an enforced target, only the subscription and its activation: the device still reports
its OS and update state, which the console shows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mdm.services.osupdates.targets import DeviceTarget

PREFIX = "jp.hikeshi.osupdate"
SUBSCRIPTION_ID = f"{PREFIX}.status-subscriptions"
ENFORCEMENT_ID = f"{PREFIX}.enforcement"
ACTIVATION_ID = f"{PREFIX}.activation"

SUBSCRIPTION_TYPE = "com.apple.configuration.management.status-subscriptions"
ENFORCEMENT_TYPE = "com.apple.configuration.softwareupdate.enforcement.specific"
ACTIVATION_TYPE = "com.apple.activation.simple"

# The status items the OS update rule and the console read.
SUBSCRIBED_ITEMS = (
    "device.operating-system.version",
    "device.operating-system.build-version",
    "softwareupdate.install-state",
    "softwareupdate.pending-version",
    "softwareupdate.failure-reason",
    "softwareupdate.install-reason",
)

# The declaration-items manifest's groups, by the first part of a declaration type.
_GROUPS = {
    "activation": "Activations",
    "configuration": "Configurations",
    "asset": "Assets",
    "management": "Management",
}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Declaration:
    type: str
    identifier: str
    payload: dict[str, Any]
    server_token: str = field(init=False)

    def __post_init__(self) -> None:
        token = hashlib.sha256(_canonical([self.type, self.identifier, self.payload])).hexdigest()
        object.__setattr__(self, "server_token", token)

    @property
    def kind(self) -> str:
        """ "configuration", "activation", "asset" or "management", from com.apple.<kind>.…"""
        return self.type.split(".")[2]

    def document(self) -> dict[str, Any]:
        return {
            "Type": self.type,
            "Identifier": self.identifier,
            "ServerToken": self.server_token,
            "Payload": self.payload,
        }


@dataclass(frozen=True)
class DeclarationSet:
    declarations: tuple[Declaration, ...]

    @property
    def token(self) -> str:
        parts = sorted(f"{d.type}/{d.identifier}/{d.server_token}" for d in self.declarations)
        return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()

    def find(self, kind: str, identifier: str) -> Declaration | None:
        return next((d for d in self.declarations if d.kind == kind and d.identifier == identifier), None)

    def items(self) -> dict[str, Any]:
        """The declaration-items answer: every group present, each declaration's identifier and token."""
        groups: dict[str, list[dict[str, str]]] = {name: [] for name in _GROUPS.values()}
        for d in self.declarations:
            groups[_GROUPS[d.kind]].append({"Identifier": d.identifier, "ServerToken": d.server_token})
        return {"Declarations": groups, "DeclarationsToken": self.token}


def declaration_set(target: DeviceTarget, details_url: str | None = None) -> DeclarationSet:
    subscription = Declaration(
        SUBSCRIPTION_TYPE, SUBSCRIPTION_ID, {"StatusItems": [{"Name": name} for name in SUBSCRIBED_ITEMS]}
    )
    configurations = [subscription]
    if target.version is not None and target.local_date_time is not None:
        payload: dict[str, Any] = {
            "TargetOSVersion": target.version,
            "TargetLocalDateTime": target.local_date_time,
        }
        if target.build:
            payload["TargetBuildVersion"] = target.build
        if details_url:
            payload["DetailsURL"] = details_url
        configurations.append(Declaration(ENFORCEMENT_TYPE, ENFORCEMENT_ID, payload))
    activation = Declaration(
        ACTIVATION_TYPE, ACTIVATION_ID, {"StandardConfigurations": [d.identifier for d in configurations]}
    )
    return DeclarationSet((*configurations, activation))
