"""Managed app configuration: the keys an app reads (Apple `Configuration`, Android
`managedConfiguration`), per org unit, with simple substitution of unit and device fields.

A string value may name `{unit_code}`, `{unit_name}`, `{station_name}` (the nearest station above
or at the unit), `{device_name}`, `{serial_number}`, `{asset_tag}`, `{udid}`; e.g. an EMS app's
`{"StationName": "{station_name}", "ServerURL": "https://ems.example.jp/{unit_code}"}`. Any other
`{name}` is refused when the rule is saved, so a typo never reaches a tablet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.models import Device, OrgUnit, OrgUnitKind
from mdm.services.apps.catalog import AppCatalogError

FIELDS = ("unit_code", "unit_name", "station_name", "device_name", "serial_number", "asset_tag", "udid")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
MAX_CONFIGURATION_BYTES = 32 * 1024


def check_configuration(configuration: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(configuration, Mapping):
        raise AppCatalogError("configuration must be an object", "configuration")
    try:
        encoded = json.dumps(configuration, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise AppCatalogError("configuration must hold only JSON values", "configuration") from exc
    if len(encoded.encode("utf-8")) > MAX_CONFIGURATION_BYTES:
        raise AppCatalogError(
            f"configuration is larger than {MAX_CONFIGURATION_BYTES} bytes", "configuration"
        )

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            for name in _PLACEHOLDER.findall(value):
                if name not in FIELDS:
                    raise AppCatalogError(
                        f"{path}: unknown field {{{name}}} (known: {', '.join(FIELDS)})", "configuration"
                    )
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        elif value is None:
            raise AppCatalogError(f"{path}: null has no plist form", "configuration")

    walk(configuration, "configuration")
    return json.loads(encoded)


def substitution_values(session: Session, device: Device) -> dict[str, str]:
    unit = session.get(OrgUnit, device.org_unit_id) if device.org_unit_id else None
    station = unit
    while station is not None and station.kind != OrgUnitKind.STATION:
        station = station.parent
    values = {
        "unit_code": (unit.code or "") if unit else "",
        "unit_name": unit.name_ja if unit else "",
        "station_name": station.name_ja if station is not None else (unit.name_ja if unit else ""),
        "device_name": device.device_name or "",
        "serial_number": device.serial_number or "",
        "asset_tag": getattr(device, "asset_tag", None) or "",
        "udid": device.udid or "",
    }
    return values


def render_configuration(
    configuration: Mapping[str, Any] | None, values: Mapping[str, str]
) -> dict[str, Any] | None:
    if configuration is None:
        return None

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
        if isinstance(value, Mapping):
            return {str(k): walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(dict(configuration))
