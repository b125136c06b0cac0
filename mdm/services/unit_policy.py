"""What a unit requires of its tablets: its own policy row, else its nearest ancestor's, else the
default row (org_unit_id NULL), else the built-in defaults below."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor, record_event
from mdm.ground.models import CompliancePolicy, Device
from mdm.services.unit_inheritance import InheritedBook, own_row, set_own_values

DEFAULT_OFFLINE_LIMIT_HOURS = 24
DEFAULT_INVENTORY_INTERVAL_HOURS = 4
DEFAULT_CERTIFICATE_WARNING_DAYS = 30


@dataclass(frozen=True)
class UnitPolicy:
    minimum_os_version: str | None = None
    offline_limit_hours: int = DEFAULT_OFFLINE_LIMIT_HOURS
    require_supervision: bool = False
    inventory_interval_hours: int = DEFAULT_INVENTORY_INTERVAL_HOURS
    certificate_warning_days: int = DEFAULT_CERTIFICATE_WARNING_DAYS
    minimum_android_security_patch: str | None = None


_FIELDS = (
    "minimum_os_version",
    "offline_limit_hours",
    "require_supervision",
    "inventory_interval_hours",
    "certificate_warning_days",
    "minimum_android_security_patch",
)


def parse_patch_level(value: object) -> date | None:
    """An Android security patch level ("2025-06-05") as a date; None when it is not one."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


# What the API, console and CLI accept for the two text fields.
OS_VERSION = re.compile(r"^\d{1,3}\.\d{1,3}(\.\d{1,3})?\Z")
PATCH_LEVEL = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


def policy_input_problems(values: dict[str, object]) -> dict[str, list[str]]:
    """Field -> messages for text values an operator typed that the rules could not use."""
    problems: dict[str, list[str]] = {}
    version = values.get("minimum_os_version")
    if version is not None and not (isinstance(version, str) and OS_VERSION.match(version)):
        problems["minimum_os_version"] = ["must be a version like 17.4 or 17.4.1"]
    patch = values.get("minimum_android_security_patch")
    if patch is not None and not (
        isinstance(patch, str) and PATCH_LEVEL.match(patch) and parse_patch_level(patch) is not None
    ):
        problems["minimum_android_security_patch"] = ["must be a date YYYY-MM-DD, e.g. 2025-06-05"]
    return problems


class PolicyBook(InheritedBook[UnitPolicy]):
    """Every policy row and the unit tree, loaded once, for evaluating many devices."""

    def __init__(self, session: Session, base: UnitPolicy | None = None) -> None:
        # `base` replaces the built-in defaults (e.g. the interval from settings).
        super().__init__(session, session.scalars(select(CompliancePolicy)), base or UnitPolicy(), _FIELDS)

    def every_policy(self) -> list[UnitPolicy]:
        """The policy of every unit and the default's: the bounds a fleet-wide check filters on."""
        return [self.for_unit(unit) for unit in (None, *self.parents)]


def policy_for(session: Session, device: Device) -> UnitPolicy:
    return PolicyBook(session).for_unit(device.org_unit_id)


def set_unit_policy(
    session: Session, actor: Actor, org_unit_id: int | None, **values: object
) -> CompliancePolicy:
    """Create or change a unit's policy (None: the default row). A value of None inherits."""
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown policy fields: {', '.join(unknown)}")
    patch = values.get("minimum_android_security_patch")
    if patch is not None and parse_patch_level(patch) is None:
        raise ValueError("minimum_android_security_patch must be a date YYYY-MM-DD")
    row = set_own_values(session, CompliancePolicy, org_unit_id, values)
    session.flush()
    record_event(
        session,
        actor,
        "compliance.policy_changed",
        "org_unit",
        org_unit_id,
        {k: v for k, v in values.items()},
    )
    return row


POLICY_FIELDS = _FIELDS


def own_policy(session: Session, org_unit_id: int | None) -> CompliancePolicy | None:
    """The unit's own stored row (None: the default row), or None when it has none."""
    return own_row(session, CompliancePolicy, org_unit_id)


@dataclass(frozen=True)
class PolicyLayers:
    """What a unit stores itself, what it would get from above, and what applies."""

    own: dict[str, object]
    inherited: UnitPolicy
    effective: UnitPolicy


def policy_layers(
    session: Session, org_unit_id: int | None, *, default_inventory_interval_hours: int | None = None
) -> PolicyLayers:
    """`default_inventory_interval_hours`: the setting the scheduler's inventory refresh uses for
    units without a value, so the interval shown is the one that runs."""
    base = (
        UnitPolicy()
        if default_inventory_interval_hours is None
        else UnitPolicy(inventory_interval_hours=default_inventory_interval_hours)
    )
    book = PolicyBook(session, base)
    row = own_policy(session, org_unit_id)
    own = {name: getattr(row, name) for name in _FIELDS} if row is not None else dict.fromkeys(_FIELDS)
    if org_unit_id is None:
        inherited = book.base
    else:
        inherited = book.for_unit(book.parents.get(org_unit_id))
    return PolicyLayers(own=own, inherited=inherited, effective=book.for_unit(org_unit_id))
