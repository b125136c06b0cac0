"""Inventory results parsed into normalized tables: Apple's schema shapes (every key, only the
required ones, unknown extras), wrong types, errors, and the history of changes."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from mdm.ground.models import Command, CommandStatus, InstalledApp, InstalledCertificate, InstalledProfile
from mdm.services.inventory.facts import device_facts
from mdm.services.inventory.history import ChangeKind, device_history
from mdm.services.inventory.queries import (
    apps_report,
    devices_with_app,
    installed_apps,
    installed_certificates,
)
from tests.inventory.helpers import answer, apps
from tests.inventory.schema_samples import schema_response
from tests.support.factories import make_device
from tests.support.pki import make_ca

SCHEMAS = {
    "DeviceInformation": "information.device",
    "SecurityInfo": "information.security",
    "InstalledApplicationList": "application.installed.list",
    "ProfileList": "profile.list",
    "CertificateList": "certificate.list",
}


@pytest.mark.parametrize("required_only", [False, True], ids=["every-key", "required-only"])
@pytest.mark.parametrize("request_type", sorted(SCHEMAS))
def test_schema_shaped_results_parse(session, frozen_clock, request_type, required_only):
    device = make_device(session)
    answer(session, device, request_type, schema_response(SCHEMAS[request_type], required_only=required_only))
    facts = device_facts(session, device.id)
    assert facts is not None
    stamp = {
        "DeviceInformation": facts.device_information_at,
        "SecurityInfo": facts.security_info_at,
        "InstalledApplicationList": facts.applications_at,
        "ProfileList": facts.profiles_at,
        "CertificateList": facts.certificates_at,
    }[request_type]
    assert stamp == frozen_clock.current


def test_device_information_fills_device_and_facts(session, frozen_clock):
    device = make_device(session, supervised=False)
    body = schema_response(
        "information.device",
        OSVersion="17.5.1",
        BuildVersion="21F90",
        SerialNumber="DMPXK2J3Q1GC",
        IsSupervised=True,
        BatteryLevel=0.81,
        DeviceCapacity=64.0,
        AvailableDeviceCapacity=20.5,
        WiFiMAC="f0:18:98:00:00:01",
        IMEI="35 123456 789012 3",
    )
    answer(session, device, "DeviceInformation", body)
    facts = device_facts(session, device.id)
    assert (device.os_version, device.build_version, device.serial_number) == (
        "17.5.1",
        "21F90",
        "DMPXK2J3Q1GC",
    )
    assert device.is_supervised is True and facts.is_supervised is True
    assert facts.battery_level == pytest.approx(0.81)
    assert (facts.device_capacity_gb, facts.available_capacity_gb) == (64.0, 20.5)
    assert facts.wifi_mac == "f0:18:98:00:00:01" and facts.imei == "35 123456 789012 3"
    # Every key is kept raw, the unknown one included, data as hex and dates as text.
    assert facts.raw_device_information["SomeKeyAppleAddsNextYear"] == {"Nested": [1, 2, 3]}
    assert device_history(session, device.id) == []  # the first answer is a baseline, not a change


def test_wrong_types_and_missing_keys_are_ignored(session):
    device = make_device(session)
    device.os_version = "17.1"
    answer(
        session,
        device,
        "DeviceInformation",
        {"QueryResponses": {"OSVersion": 17, "BatteryLevel": "full", "IsSupervised": "yes", "IMEI": 12}},
    )
    facts = device_facts(session, device.id)
    assert device.os_version == "17.1"
    assert facts.battery_level is None and facts.imei is None and facts.is_supervised is None
    answer(
        session, device, "InstalledApplicationList", {"InstalledApplicationList": [{"Name": "no id"}, 5, {}]}
    )
    # An app without a bundle identifier is kept by its name (issue 14); a non-dictionary and an
    # entry with neither identifier, path nor name are ignored.
    assert [a.identifier for a in installed_apps(session, device.id)] == ["name:no id"]
    answer(session, device, "DeviceInformation", {"QueryResponses": "not a dictionary"})


def test_os_upgrade_and_low_battery_are_history(session, frozen_clock):
    device = make_device(session)
    answer(
        session, device, "DeviceInformation", {"QueryResponses": {"OSVersion": "17.4", "BatteryLevel": 0.5}}
    )
    frozen_clock.advance(hours=4)
    answer(
        session,
        device,
        "DeviceInformation",
        {"QueryResponses": {"OSVersion": "17.5.1", "BatteryLevel": 0.15}},
    )
    frozen_clock.advance(hours=4)
    # Still low: not a new event. Apple's -1.0 (unknown) is not a drop either.
    answer(
        session, device, "DeviceInformation", {"QueryResponses": {"OSVersion": "17.5.1", "BatteryLevel": 0.1}}
    )
    answer(session, device, "DeviceInformation", {"QueryResponses": {"BatteryLevel": -1.0}})
    history = [(c.kind, c.old_value, c.new_value) for c in reversed(device_history(session, device.id))]
    assert history == [(ChangeKind.OS_UPGRADED, "17.4", "17.5.1"), (ChangeKind.BATTERY_LOW, "0.5", "0.15")]


def test_apps_installed_updated_removed(session, frozen_clock):
    device = make_device(session)
    answer(session, device, "InstalledApplicationList", apps(("jp.fire.triage", "トリアージ", "1.0")))
    assert device_history(session, device.id) == []
    frozen_clock.advance(hours=4)
    answer(
        session,
        device,
        "InstalledApplicationList",
        apps(("jp.fire.triage", "トリアージ", "1.1"), ("com.example.game", "Game", "3.0")),
    )
    frozen_clock.advance(hours=4)
    answer(session, device, "InstalledApplicationList", apps(("jp.fire.triage", "トリアージ", "1.1")))
    kinds = [(c.kind, c.subject) for c in reversed(device_history(session, device.id))]
    assert sorted(kinds[:2]) == [
        (ChangeKind.APP_INSTALLED, "com.example.game"),
        (ChangeKind.APP_UPDATED, "jp.fire.triage"),
    ]
    assert kinds[2:] == [(ChangeKind.APP_REMOVED, "com.example.game")]
    assert [(a.identifier, a.name, a.short_version) for a in installed_apps(session, device.id)] == [
        ("jp.fire.triage", "トリアージ", "1.1")
    ]


def test_filtered_app_query_removes_nothing_and_marks_managed(session):
    device = make_device(session)
    answer(session, device, "InstalledApplicationList", apps(("a.one", "One", "1"), ("b.two", "Two", "1")))
    answer(
        session,
        device,
        "InstalledApplicationList",
        apps(("a.one", "One", "1")),
        params={"ManagedAppsOnly": True},
    )
    rows = {a.identifier: a.is_managed for a in installed_apps(session, device.id)}
    assert rows == {"a.one": True, "b.two": None}


def test_an_app_list_like_the_last_is_not_merged_again_and_any_other_is(session, frozen_clock):
    """The digest of the last complete list (issue 18): an equal list dates the list and reads no
    row; a changed one, or one after a partial list, is merged as before."""
    device = make_device(session)
    listed = apps(("a.one", "One", "1"), ("b.two", "Two", "1"))
    answer(session, device, "InstalledApplicationList", listed)
    rows_read: list[str] = []

    def note(_conn, _cursor, statement, *_):  # type: ignore[no-untyped-def]
        # The merge's read of the device's rows (compliance, after it, reads them its own way).
        if "FROM installed_apps WHERE installed_apps.device_id = " in " ".join(statement.split()):
            rows_read.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", note)
    try:
        frozen_clock.advance(hours=1)
        answer(session, device, "InstalledApplicationList", listed)
        assert rows_read == [] and device_facts(session, device.id).applications_at == frozen_clock.current
        # A partial list (managed apps only) forgets the digest: the same complete list is merged.
        answer(
            session,
            device,
            "InstalledApplicationList",
            apps(("a.one", "One", "1")),
            params={"ManagedAppsOnly": True},
        )
        rows_read.clear()
        answer(session, device, "InstalledApplicationList", listed)
        assert len(rows_read) == 1
    finally:
        event.remove(engine, "before_cursor_execute", note)
    # A changed list is merged: one app updated, one removed, each in the history.
    frozen_clock.advance(hours=1)
    answer(session, device, "InstalledApplicationList", apps(("a.one", "One", "2")))
    assert [(a.identifier, a.short_version) for a in installed_apps(session, device.id)] == [("a.one", "2")]
    kinds = sorted((c.kind, c.subject) for c in device_history(session, device.id))
    assert kinds == [(ChangeKind.APP_REMOVED, "b.two"), (ChangeKind.APP_UPDATED, "a.one")]
    # And the list before it again: merged back, not taken for the last one.
    answer(session, device, "InstalledApplicationList", listed)
    assert [(a.identifier, a.short_version) for a in installed_apps(session, device.id)] == [
        ("a.one", "1"),
        ("b.two", "1"),
    ]


def test_error_result_changes_no_inventory(session):
    device = make_device(session)
    answer(session, device, "InstalledApplicationList", apps(("a.one", "One", "1")))
    command = answer(session, device, "InstalledApplicationList", {}, status="Error")
    assert command.status == CommandStatus.ERROR
    assert [a.identifier for a in installed_apps(session, device.id)] == ["a.one"]


def test_profiles_and_certificates(session, frozen_clock):
    from cryptography.hazmat.primitives.serialization import Encoding

    device = make_device(session)
    ca_cert, _ = make_ca("Hikeshi Wi-Fi CA")
    der = ca_cert.public_bytes(Encoding.DER)
    answer(
        session,
        device,
        "CertificateList",
        {
            "CertificateList": [
                {"CommonName": "Hikeshi Wi-Fi CA", "IsIdentity": False, "Data": der},
                {"CommonName": "garbage", "IsIdentity": True, "Data": b"not der"},
                {"CommonName": "no data"},
                # cryptography refuses X.509 version 4 with InvalidVersion, not a ValueError
                {
                    "CommonName": "version 4",
                    "Data": der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03", 1),
                },
            ]
        },
    )
    certs = {c.common_name: c for c in installed_certificates(session, device.id)}
    assert set(certs) == {"Hikeshi Wi-Fi CA", "garbage", "no data", "version 4"}
    assert certs["version 4"].subject is None and certs["version 4"].fingerprint_sha256
    assert certs["Hikeshi Wi-Fi CA"].not_after == ca_cert.not_valid_after_utc
    assert "Hikeshi Wi-Fi CA" in certs["Hikeshi Wi-Fi CA"].subject
    assert certs["garbage"].is_identity and certs["garbage"].not_after is None
    answer(
        session,
        device,
        "ProfileList",
        {
            "ProfileList": [
                {
                    "PayloadIdentifier": "jp.fire.hq.restrictions",
                    "PayloadUUID": "A-1",
                    "PayloadDisplayName": "制限",
                    "PayloadVersion": 1,
                    "IsManaged": True,
                    "PayloadContent": [],
                }
            ]
        },
    )
    frozen_clock.advance(hours=1)
    answer(session, device, "ProfileList", {"ProfileList": []})
    answer(session, device, "CertificateList", {"CertificateList": []})
    assert session.scalar(select(func.count()).select_from(InstalledProfile)) == 0
    assert session.scalar(select(func.count()).select_from(InstalledCertificate)) == 0
    kinds = {c.kind for c in device_history(session, device.id)}
    assert kinds == {ChangeKind.PROFILE_REMOVED, ChangeKind.CERTIFICATE_REMOVED}


def test_apps_report_and_has_app_filter(session):
    one, two = make_device(session), make_device(session)
    answer(
        session, one, "InstalledApplicationList", apps(("jp.fire.triage", "Triage", "1"), ("x.y", "XY", "1"))
    )
    answer(session, two, "InstalledApplicationList", apps(("jp.fire.triage", "Triage", "1")))
    report = [(r.identifier, r.devices) for r in apps_report(session)]
    assert report == [("jp.fire.triage", 2), ("x.y", 1)]
    assert [d.id for d in devices_with_app(session, "x.y")] == [one.id]
    assert session.scalar(select(func.count()).select_from(InstalledApp)) == 3
    assert session.scalar(select(func.count()).select_from(Command)) == 2
