"""The pure parts of AMAPI ops: queued commands as issueCommand bodies and devices.delete flags,
what an Operation says (invariant 5), and a Device as the agent's inventory."""

from __future__ import annotations

import pytest

from mdm.services.amapi.command_map import (
    NotOnAmapi,
    delete_call,
    issue_command_body,
    operation_outcome,
    report_for,
    without_secrets,
)
from mdm.services.amapi.inventory_map import agent_inventory, password_sufficient


def test_hotline_commands_become_amapi_commands() -> None:
    assert issue_command_body("DeviceLock", {"Message": "x"}) == {"type": "LOCK"}
    lost = issue_command_body(
        "EnableLostMode", {"Message": "拾得者は消防署へ", "PhoneNumber": "03-1234-5678", "Footnote": "中央署"}
    )
    assert lost == {
        "type": "START_LOST_MODE",
        "startLostModeParams": {
            "lostMessage": {"defaultMessage": "拾得者は消防署へ"},
            "lostPhoneNumber": {"defaultMessage": "03-1234-5678"},
            "lostOrganization": {"defaultMessage": "中央署"},
        },
    }
    assert issue_command_body("DisableLostMode", {}) == {"type": "STOP_LOST_MODE", "stopLostModeParams": {}}
    assert issue_command_body("RestartDevice", {}) == {"type": "REBOOT"}
    assert issue_command_body("ResetPassword", {"flags": ["REQUIRE_ENTRY", "LOCK_NOW"]}, "2580") == {
        "type": "RESET_PASSWORD",
        "newPassword": "2580",
        "resetPasswordFlags": ["REQUIRE_ENTRY", "LOCK_NOW"],
    }
    assert issue_command_body("ClearAppData", {"packages": ["jp.example.dispatch"]}) == {
        "type": "CLEAR_APP_DATA",
        "clearAppsDataParams": {"packageNames": ["jp.example.dispatch"]},
    }
    assert issue_command_body("RelinquishOwnership", {}) == {"type": "RELINQUISH_OWNERSHIP"}
    with pytest.raises(NotOnAmapi, match="InstallProfile"):
        issue_command_body("InstallProfile", {})


def test_wipe_flags_follow_the_agents_choice() -> None:
    hotline = delete_call({}, "盗難")
    # The eSIM's plan goes with a stolen tablet, the SD card too; factory-reset protection stays.
    assert hotline.wipe_data_flags == (
        "PRESERVE_RESET_PROTECTION_DATA",
        "WIPE_EXTERNAL_STORAGE",
        "WIPE_ESIMS",
    )
    assert hotline.params() == {
        "wipeDataFlags": ["PRESERVE_RESET_PROTECTION_DATA", "WIPE_EXTERNAL_STORAGE", "WIPE_ESIMS"],
        "wipeReasonMessage": "盗難",
    }
    reissue = delete_call({"PreserveDataPlan": True}, None)
    assert "WIPE_ESIMS" not in reissue.wipe_data_flags
    assert reissue.wipe_reason_message and len(delete_call({}, "x" * 500).wipe_reason_message) == 200


def test_an_operation_done_with_an_error_is_a_failure_and_pending_is_pending() -> None:
    assert operation_outcome({"name": "o", "done": False}).pending
    assert operation_outcome({"name": "o"}).pending
    ok = operation_outcome({"name": "o", "done": True, "metadata": {"type": "LOCK"}})
    assert ok.done and not ok.failed
    failed = operation_outcome(
        {
            "name": "o",
            "done": True,
            "error": {"code": 9, "message": "no"},
            "metadata": {"errorCode": "MANAGEMENT_MODE"},
        }
    )
    assert failed.failed and failed.code == "MANAGEMENT_MODE"
    assert report_for("U1", failed)["Status"] == "Error"
    assert report_for("U1", ok) == {"CommandUUID": "U1", "Status": "Acknowledged"}
    refused_lost = operation_outcome(
        {"done": True, "metadata": {"startLostModeStatus": {"status": "USER_EXIT_LOST_MODE_RECENTLY"}}}
    )
    assert refused_lost.failed
    already = operation_outcome(
        {"done": True, "metadata": {"startLostModeStatus": {"status": "ALREADY_IN_LOST_MODE"}}}
    )
    assert not already.failed
    kept = without_secrets({"name": "o", "metadata": {"type": "RESET_PASSWORD", "newPassword": "2580"}})
    assert "2580" not in str(kept)


def test_a_device_becomes_the_agents_inventory_and_unknown_stays_unknown() -> None:
    device = {
        "name": "enterprises/LC1/devices/abc",
        "managementMode": "DEVICE_OWNER",
        "appliedState": "LOST",
        "hardwareInfo": {"serialNumber": "R52T30", "model": "SM-T636B", "brand": "samsung"},
        "softwareInfo": {"androidVersion": "14", "securityPatchLevel": "2026-10-01", "futureKey": 1},
        "deviceSettings": {
            "isDeviceSecure": True,
            "isEncrypted": True,
            "encryptionStatus": "ACTIVE_PER_USER",
        },
        "applicationReports": [
            {
                "packageName": "jp.example.dispatch",
                "versionName": "3.1",
                "versionCode": 31,
                "state": "INSTALLED",
            },
            {"packageName": "com.android.chrome", "applicationSource": "SYSTEM_APP_FACTORY_VERSION"},
            {"packageName": "jp.example.old", "state": "REMOVED"},
        ],
        "policyCompliant": False,
        "nonComplianceDetails": [{"settingName": "passwordPolicies", "nonComplianceReason": "USER_ACTION"}],
        "somethingNew": {"x": 1},
    }
    inventory = agent_inventory(device)
    assert inventory["hardware"] == {
        "serial_number": "R52T30",
        "model": "SM-T636B",
        "manufacturer": "samsung",
    }
    assert inventory["os"] == {"android_version": "14", "security_patch": "2026-10-01"}
    assert inventory["security"] == {
        "device_owner": True,
        "password_set": True,
        "password_sufficient": False,
        "lost_mode": True,
    }
    assert [p["package_name"] for p in inventory["packages"]] == ["jp.example.dispatch", "com.android.chrome"]
    assert inventory["packages"][1]["system"] is True
    assert inventory["amapi_policy"]["policy_compliant"] is False
    partial = agent_inventory(
        {"name": "enterprises/LC1/devices/abc", "softwareInfo": {"androidVersion": "15"}}
    )
    assert partial == {"hardware": {}, "os": {"android_version": "15"}, "security": {}}
    assert password_sufficient({"policyCompliant": False}) is None  # no reasons given: unknown
