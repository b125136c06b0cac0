"""Issue 21 §2–3 over the real Apple protocol: a unit's required apps reach its iPads and stay
there, its blocked apps are reported and (where the unit says so) removed.

install → ManagedApplicationList → reinstall on removal (bounded) → block-list removal, with the
commands checked against Apple's schema (application.install.yaml, application.remove.yaml) and
the device's answers shaped by it (every key, keys Apple has not defined, partial answers)."""

from __future__ import annotations

import hashlib
import plistlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy import select, update

from commands.app_enforcement import MAX_ATTEMPTS, converge_device
from mdm.ground.db import transaction
from mdm.ground.models import Alert, AuditEvent, Command, ComplianceFinding, Device, DeviceAppState, OrgUnit
from mdm.services.apps import catalog, rules
from mdm.services.apps.licensing import LICENSE_PROVIDER, LicenseOutcome, LicenseProvider
from mdm.services.apps.state import apply_managed_application_list
from tests.apps.packages import build_ipa
from tests.apps.support import (
    answer,
    command_problems,
    enroll_into,
    make_unit,
    managed_list_entry,
    managed_list_problems,
    next_command,
    queue,
)
from tests.inventory.helpers import ADMIN

EMS = "jp.fire.ems.records"
HOSPITAL = "jp.fire.hospital.select"
GAME = "com.example.game"


class CountedLicenses:
    """A LicenseProvider with a fixed number of device licenses (what the Apps and Books
    service answers for an asset with `count` licenses)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.holders: set[tuple[str, str]] = set()

    def ensure_device_license(self, session: Any, *, adam_id: str, serial_number: str) -> LicenseOutcome:
        if (adam_id, serial_number) in self.holders:
            return LicenseOutcome("assigned")
        if len(self.holders) >= self.count:
            return LicenseOutcome(
                "unavailable", "license not available: all licenses of the asset are assigned"
            )
        self.holders.add((adam_id, serial_number))
        return LicenseOutcome("assigned")

    def release_device_license(self, session: Any, *, adam_id: str, serial_number: str) -> LicenseOutcome:
        self.holders.discard((adam_id, serial_number))
        return LicenseOutcome("assigned")


@pytest.fixture
def factory(app):
    return app.extensions["hikeshi"].session_factory


@pytest.fixture
def station(app, factory) -> Iterator[dict[str, Any]]:
    unit_id = make_unit(app, "NISHI")
    with transaction(factory) as s:
        unit = s.get(OrgUnit, unit_id)
        ems = catalog.upload_package(
            s, "enterprise", "ems.ipa", build_ipa(EMS, "2.1", "救急記録"), actor=ADMIN
        )
        store = catalog.add_store_app(
            s,
            {"itunes_store_id": 1234567890, "identifier": HOSPITAL, "name": "病院選定", "version": "5.0"},
            actor=ADMIN,
        )
        rules.require_app(
            s,
            unit,
            ems,
            configuration={
                "StationName": "{station_name}",
                "ServerURL": "https://ems.example.jp/{unit_code}",
            },
            actor=ADMIN,
        )
        rules.require_app(s, unit, store, actor=ADMIN)
        rules.block_app(s, unit, "apple", GAME, actor=ADMIN)
        ids = {"unit": unit_id, "ems": ems.id, "store": store.id}
    yield ids


def _state(factory, device_id: int, identifier: str) -> DeviceAppState:
    with factory() as s:
        state = s.scalars(
            select(DeviceAppState).where(
                DeviceAppState.device_id == device_id, DeviceAppState.identifier == identifier
            )
        ).one()
        s.expunge(state)
        return state


def _inventory(app, ipad, device_id: int, apps: list[dict[str, Any]]) -> None:
    uuid = queue(app, device_id, "InstalledApplicationList")
    assert _take(app, ipad, "InstalledApplicationList")["CommandUUID"] == uuid
    answer(app, ipad, uuid, InstalledApplicationList=apps)


def _take(app, ipad, request_type: str) -> dict[str, Any]:
    """The next command, which must be `request_type` (others before it are acknowledged bare)."""
    for _ in range(10):
        message = next_command(app, ipad)
        assert message is not None, f"no {request_type} waiting"
        if message["Command"]["RequestType"] == request_type:
            return message
        answer(app, ipad, message["CommandUUID"])
    raise AssertionError(f"no {request_type} among the next commands")


def _managed_list(app, ipad, apps: dict[str, Any]) -> None:
    message = _take(app, ipad, "ManagedApplicationList")
    assert managed_list_problems(apps) == []
    answer(app, ipad, message["CommandUUID"], ManagedApplicationList=apps)


def _pending(factory, device_id: int, request_type: str) -> list[Command]:
    with factory() as s:
        return list(
            s.scalars(
                select(Command).where(
                    Command.device_id == device_id,
                    Command.request_type == request_type,
                    Command.status.in_(("queued", "sent", "not_now")),
                )
            )
        )


def test_required_apps_install_stay_installed_and_come_back(app, factory, device_ca, station):
    client = app.test_client()
    ipad, device_id = enroll_into(app, device_ca, "ipad-apps", station["unit"])

    # Enrolled into the unit: the in-house app is sent at once; the store app is not, and says why.
    install = _take(app, ipad, "InstallApplication")
    command = install["Command"]
    assert command_problems("application.install", command) == []
    assert command["ManagementFlags"] == 1  # removed with the MDM profile
    assert command["Configuration"] == {
        "StationName": "NISHI消防署",
        "ServerURL": "https://ems.example.jp/NISHI",
    }
    store_state = _state(factory, device_id, HOSPITAL)
    assert store_state.license_state == "not_configured"
    assert store_state.reason.startswith("license not available")
    assert [
        c for c in _pending(factory, device_id, "InstallApplication") if "iTunesStoreID" in c.params
    ] == []

    # The manifest Hikeshi serves pins the .ipa by its SHA-256, and the .ipa it serves has that hash.
    manifest_url = urlparse(command["ManifestURL"])
    manifest = client.get(manifest_url.path)
    assert manifest.status_code == 200
    [item] = plistlib.loads(manifest.data)["items"]
    [asset] = item["assets"]
    assert item["metadata"]["bundle-identifier"] == EMS
    ipa = client.get(urlparse(asset["url"]).path)
    assert ipa.status_code == 200 and hashlib.sha256(ipa.data).hexdigest() == asset["sha256s"][0]
    assert asset["sha256-size"] == len(ipa.data)

    # Acknowledged with State Installing: taken, not done.
    answer(app, ipad, install["CommandUUID"], Identifier=EMS, State="Installing", SomethingNew=True)
    assert _state(factory, device_id, EMS).managed_status == "Installing"

    # The inventory asks for the managed list; its answer (with a non-dictionary entry and keys
    # Apple has not defined) says Managed: nothing more is sent.
    _inventory(app, ipad, device_id, [{"Identifier": EMS, "Name": "救急記録", "ShortVersion": "2.1"}])
    _managed_list(
        app, ipad, {EMS: managed_list_entry("Managed", HasConfiguration=True), "broken": "not a dict"}
    )
    state = _state(factory, device_id, EMS)
    assert (state.managed_status, state.has_configuration, state.attempts, state.reason) == (
        "Managed",
        True,
        0,
        None,
    )
    assert _pending(factory, device_id, "InstallApplication") == []

    # The user deletes it: the next list says ManagedButUninstalled, and it is installed again.
    queue(app, device_id, "ManagedApplicationList")
    _managed_list(app, ipad, {EMS: managed_list_entry("ManagedButUninstalled")})
    again = _take(app, ipad, "InstallApplication")
    assert again["Command"]["ManifestURL"] == command["ManifestURL"]
    assert command_problems("application.install", again["Command"]) == []
    answer(app, ipad, again["CommandUUID"], Identifier=EMS, State="Queued")


def test_reinstalls_are_bounded_with_a_growing_wait(app, factory, device_ca, station):
    ipad, device_id = enroll_into(app, device_ca, "ipad-retry", station["unit"])
    sent = 0
    for _ in range(MAX_ATTEMPTS + 3):
        message = next_command(app, ipad)
        while message is not None:
            if message["Command"]["RequestType"] == "InstallApplication":
                sent += 1
                answer(app, ipad, message["CommandUUID"], "Error")
            else:
                answer(app, ipad, message["CommandUUID"])
            message = next_command(app, ipad)
        # A Failed list right away does not send again: the wait has not passed.
        queue(app, device_id, "ManagedApplicationList")
        _managed_list(app, ipad, {EMS: managed_list_entry("Failed")})
        assert _pending(factory, device_id, "InstallApplication") == []
        # Time passes (the wait is over): the next list may send one more.
        with transaction(factory) as s:
            s.execute(
                update(DeviceAppState)
                .where(DeviceAppState.device_id == device_id)
                .values(next_attempt_at=None)
            )
        queue(app, device_id, "ManagedApplicationList")
        _managed_list(app, ipad, {EMS: managed_list_entry("Failed")})
    assert sent == MAX_ATTEMPTS
    state = _state(factory, device_id, EMS)
    assert state.reason.startswith(f"gave up after {MAX_ATTEMPTS} attempts")


def test_a_waiting_install_is_not_sent_twice(app, factory, device_ca, station):
    _ipad, device_id = enroll_into(app, device_ca, "ipad-once", station["unit"])
    context = app.extensions["hikeshi"].commands
    for _ in range(3):
        with transaction(factory) as s:
            device = s.get(Device, device_id)
            apply_managed_application_list(s, device, {})  # an empty list: nothing is managed
            converge_device(s, device, context=context)
    assert len(_pending(factory, device_id, "InstallApplication")) == 1


def test_store_apps_install_with_a_device_license_and_updates_follow_the_store(
    app, factory, device_ca, station
):
    licenses = CountedLicenses(1)

    def provider() -> LicenseProvider:
        return licenses

    LICENSE_PROVIDER.connect(factory, provider)
    try:
        ipad, device_id = enroll_into(app, device_ca, "ipad-store", station["unit"])
        installs = {}
        for _ in range(2):
            message = _take(app, ipad, "InstallApplication")
            installs["iTunesStoreID" in message["Command"]] = message
            answer(app, ipad, message["CommandUUID"], State="Queued")
        store = installs[True]["Command"]
        assert store["iTunesStoreID"] == 1234567890 and store["Options"] == {"PurchaseMethod": 1}
        assert command_problems("application.install", store) == []
        assert _state(factory, device_id, HOSPITAL).license_state == "assigned"

        # A second iPad finds no license left: nothing is sent to it for the store app, and it says why.
        _other, other_id = enroll_into(app, device_ca, "ipad-store-2", station["unit"])
        state = _state(factory, other_id, HOSPITAL)
        assert (state.license_state, state.reason) == (
            "unavailable",
            "license not available: all licenses of the asset are assigned",
        )

        # Installed; then the store has a new version: it is pushed as an update, once.
        queue(app, device_id, "ManagedApplicationList")
        managed = {HOSPITAL: managed_list_entry("Managed"), EMS: managed_list_entry("Managed")}
        _managed_list(app, ipad, managed)
        assert _pending(factory, device_id, "InstallApplication") == []
        with transaction(factory) as s:
            catalog.set_store_version(s, catalog.get_app(s, station["store"]), "5.1", actor=ADMIN)
        queue(app, device_id, "ManagedApplicationList")
        _managed_list(app, ipad, managed)
        [update_sent] = _pending(factory, device_id, "InstallApplication")
        assert update_sent.params["iTunesStoreID"] == 1234567890
        with factory() as s:
            assert (
                s.scalars(select(AuditEvent).where(AuditEvent.action == "app.update_sent")).first()
                is not None
            )
    finally:
        LICENSE_PROVIDER.disconnect(factory, provider)


@pytest.mark.parametrize("block_action", ["report", "remove"])
def test_a_blocked_app_is_reported_and_removed_when_the_unit_says_so(
    app, factory, device_ca, station, block_action
):
    with transaction(factory) as s:
        rules.set_block_action(s, s.get(OrgUnit, station["unit"]), block_action, actor=ADMIN)
    ipad, device_id = enroll_into(app, device_ca, f"ipad-block-{block_action}", station["unit"])
    _inventory(app, ipad, device_id, [{"Identifier": GAME, "Name": "Game", "ShortVersion": "1"}])
    _managed_list(app, ipad, {GAME: managed_list_entry("Managed"), EMS: managed_list_entry("Managed")})
    with factory() as s:
        found = s.scalars(select(AuditEvent).where(AuditEvent.action == "app.blocked_app_found")).all()
    assert len(found) == 1 and found[0].details["identifier"] == GAME
    # Detect and notify: the same compliance finding and alert as an app a profile blocks.
    with factory() as s:
        finding = s.scalars(select(ComplianceFinding).where(ComplianceFinding.device_id == device_id)).all()
        assert [(f.rule, f.subject) for f in finding if f.rule == "unauthorized_app"] == [
            ("unauthorized_app", GAME)
        ]
        assert s.scalars(select(Alert).where(Alert.device_id == device_id)).first() is not None
    removals = _pending(factory, device_id, "RemoveApplication")
    if block_action == "report":
        assert removals == []
        assert _state(factory, device_id, GAME).reason.startswith("blocked app installed: reported")
        return
    [removal] = removals
    message = _take(app, ipad, "RemoveApplication")
    assert message["CommandUUID"] == removal.uuid
    assert command_problems("application.remove", message["Command"]) == []
    answer(app, ipad, removal.uuid)
    # Gone from the next inventory: nothing more is reported or sent.
    _inventory(app, ipad, device_id, [])
    assert _pending(factory, device_id, "RemoveApplication") == []
    with factory() as s:
        assert (
            len(s.scalars(select(AuditEvent).where(AuditEvent.action == "app.blocked_app_found")).all()) == 1
        )
