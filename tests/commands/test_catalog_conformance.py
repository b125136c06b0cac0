"""Every key Hikeshi can put into an Apple command is a key of that command in Apple's schema
(../shared/apple-device-management/mdm/commands), and every default DeviceInformation query is
one of the schema's queries."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from commands.catalog import CommandParamsError, all_command_types, equivalent_for, get_command_type
from commands.kinds.device_information import STANDARD_DEVICE_QUERIES
from tests.support.apple_schema import schema_dir_or_skip

# Parameters read by Hikeshi at delivery and never sent to the device (commands/kinds/install_profile.py:
# Rendering is replaced by the stored profile it names, as Payload).
DELIVERY_ONLY = {"InstallProfile": {"DeviceIdentity", "Rendering"}}


def _commands_dir() -> Path:
    return schema_dir_or_skip().parent / "commands"


@cache
def _schemas_by_request_type() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(_commands_dir().glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        request_type = (doc.get("payload") or {}).get("requesttype")
        if request_type:
            found[request_type] = doc
    return found


def _apple_kinds() -> list[str]:
    return [kind.request_type for kind in all_command_types() if "apple" in kind.platforms]


@pytest.mark.parametrize("request_type", _apple_kinds())
def test_every_parameter_we_accept_is_a_key_of_apples_command(request_type: str) -> None:
    schema = _schemas_by_request_type().get(request_type)
    assert schema is not None, f"{request_type} has no file in Apple's schema"
    apple_keys = {spec["key"] for spec in schema.get("payloadkeys") or []}
    ours = set(get_command_type(request_type).schema().fields) - DELIVERY_ONLY.get(request_type, set())
    assert ours - apple_keys == set(), f"{request_type} accepts keys Apple does not define"


def test_erase_device_refuses_revoke_vpp_licenses() -> None:
    with pytest.raises(CommandParamsError) as err:
        get_command_type("EraseDevice").validate({"RevokeVPPLicenses": True})
    assert "RevokeVPPLicenses" in err.value.fields


def _device_information_queries() -> set[str]:
    spec = _schemas_by_request_type()["DeviceInformation"]
    [queries] = [k for k in spec["payloadkeys"] if k["key"] == "Queries"]
    [item] = queries["subkeys"]
    return {key["key"] for key in item["subkeys"]}


def test_every_default_device_information_query_is_in_apples_schema() -> None:
    allowed = _device_information_queries()
    assert "IsSupervised" in allowed and "PasscodeLockGracePeriodEnforced" not in allowed
    assert [q for q in STANDARD_DEVICE_QUERIES if q not in allowed] == []
    assert len(set(STANDARD_DEVICE_QUERIES)) == len(STANDARD_DEVICE_QUERIES)


def test_the_default_query_is_what_a_queued_device_information_carries() -> None:
    params = get_command_type("DeviceInformation").validate(None)
    assert params["Queries"] == list(STANDARD_DEVICE_QUERIES)
    assert "PasscodeLockGracePeriodEnforced" not in params["Queries"]


@pytest.mark.parametrize(
    ("params", "flags"),
    [
        ({}, ["WIPE_EXTERNAL_STORAGE", "WIPE_EUICC"]),
        ({"PreserveDataPlan": False}, ["WIPE_EXTERNAL_STORAGE", "WIPE_EUICC"]),
        ({"PreserveDataPlan": True}, ["WIPE_EXTERNAL_STORAGE"]),
    ],
)
def test_android_wipe_erases_the_data_plan_unless_preserved(params: dict, flags: list[str]) -> None:
    """Apple's device.erase.yaml: PreserveDataPlan defaults to false, i.e. the plan is erased."""
    [spec] = [
        k for k in _schemas_by_request_type()["EraseDevice"]["payloadkeys"] if k["key"] == "PreserveDataPlan"
    ]
    assert spec["default"] is False
    equivalent = equivalent_for("EraseDevice", "android")
    assert equivalent is not None and equivalent.request_type == "WIPE"
    assert equivalent.params(get_command_type("EraseDevice").validate(params)) == {"flags": flags}
