"""An Android sync answers "policy unchanged" without building the policy when nothing it is built
from changed (issue 18: mdm.services.android_channel.policy_basis). The risk of such a shortcut is
a tablet kept on an old policy: a camera left on, a blocked app allowed. So every kind of change is
made here, the way an administrator (or a hand in psql) makes it, and the very next sync of a real
agent over HTTP must carry the new policy; and the policy must read no table the database does not
watch."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import POLICY_INPUT_TABLES, Device, OrgUnit
from mdm.services import orgunits
from mdm.services.android_channel.policy import current_policy
from mdm.services.apps.catalog import upload_package
from mdm.services.apps.rules import block_app, require_app
from mdm.services.osupdates.policy import set_update_policy
from profiles.assignment import assign_profile
from profiles.service import create_profile_from_template
from tests.apps.packages import build_apk, signer

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
RECORDS = "jp.fire.ems.records"


def _generation(factory: Any) -> int:
    with factory() as s:
        return int(s.execute(text("SELECT value FROM policy_generation WHERE id = 1")).scalar_one())


def test_each_change_a_policy_is_built_from_reaches_the_agent_at_its_next_sync(
    enroll_app: Any, agent_factory: Any, android_token: Any, tree: Any, enroll_settings: Any
) -> None:
    factory = enroll_app.extensions["hikeshi"].session_factory
    agent = agent_factory()
    agent.enroll(android_token())
    agent.sync()
    device_id = agent.device_id

    def unchanged() -> str:
        answer = agent.sync(inventory=False)
        assert "policy" not in answer, "an unchanged policy was sent again"
        assert answer["policy_version"] == agent.policy_version
        return str(answer["policy_version"])

    version = unchanged()
    generation = _generation(factory)
    unchanged()
    assert _generation(factory) == generation, "a sync raised the generation: every sync would build"

    def after(change: Callable[[Session], None]) -> dict[str, Any]:
        nonlocal version
        with transaction(factory) as s:
            change(s)
        answer = agent.sync(inventory=False)
        assert "policy" in answer, f"{change.__name__}: the next sync did not carry the new policy"
        assert answer["policy_version"] != version
        version = unchanged()  # and the sync after it answers from the device's row again
        return dict(answer["policy"]["policy"])

    def strict_profile_on_the_station(s: Session) -> None:
        profile = create_profile_from_template(s, ADMIN, "strict", identifier="jp.example.fd.strict")
        assign_profile(s, enroll_settings, profile, s.get(OrgUnit, tree.station.id), actor=ADMIN)

    assert after(strict_profile_on_the_station)["cameraAccess"] == "CAMERA_ACCESS_DISABLED"

    def os_updates_set_at_hq(s: Session) -> None:
        set_update_policy(s, ADMIN, tree.hq.id, android_mode="automatic")

    assert after(os_updates_set_at_hq)["systemUpdate"] == {"type": "AUTOMATIC"}

    def game_blocked_in_the_unit(s: Session) -> None:
        block_app(s, s.get(OrgUnit, tree.ambulance.id), "android", "com.example.game", actor=ADMIN)

    apps = after(game_blocked_in_the_unit)["applications"]
    assert {"packageName": "com.example.game", "installType": "BLOCKED"} in apps

    def records_app_required_naming_the_tablet(s: Session) -> None:
        apk = build_apk(RECORDS, 42, "4.2", signed_by=signer("ems-vendor"))
        app = upload_package(s, "android_apk", "records.apk", apk, actor=ADMIN)
        require_app(
            s, s.get(OrgUnit, tree.ambulance.id), app, configuration={"tablet": "{device_name}"}, actor=ADMIN
        )

    apps = after(records_app_required_naming_the_tablet)["applications"]
    [records] = [a for a in apps if a["packageName"] == RECORDS]

    def tablet_renamed(s: Session) -> None:
        # The device's own row has no trigger: its fields are in the basis.
        s.get(Device, device_id).device_name = "救急1号タブレット"

    apps = after(tablet_renamed)["applications"]
    [renamed] = [a for a in apps if a["packageName"] == RECORDS]
    assert (
        renamed["managedConfiguration"] == {"tablet": "救急1号タブレット"} != records["managedConfiguration"]
    )

    def location_reporting_turned_on_in_psql(s: Session) -> None:
        # Not through the ORM: the database itself raises the generation.
        s.execute(
            text("UPDATE org_units SET android_location_reporting = true WHERE id = :id"), {"id": tree.hq.id}
        )

    after(location_reporting_turned_on_in_psql)
    assert agent.policy_reporting == {"location": True}

    def tablet_moved_to_the_pump(s: Session) -> None:
        orgunits.assign_device(s, s.get(Device, device_id), s.get(OrgUnit, tree.pump.id), actor=ADMIN)

    apps = after(tablet_moved_to_the_pump)["applications"]
    assert all(a["packageName"] not in (RECORDS, "com.example.game") for a in apps)

    def new_version_of_the_records_apk(s: Session) -> None:
        orgunits.assign_device(s, s.get(Device, device_id), s.get(OrgUnit, tree.ambulance.id), actor=ADMIN)
        s.flush()
        apk = build_apk(RECORDS, 43, "4.3", signed_by=signer("ems-vendor"))
        upload_package(s, "android_apk", "records.apk", apk, actor=ADMIN)

    apps = after(new_version_of_the_records_apk)["applications"]
    assert [a["minimumVersionCode"] for a in apps if a["packageName"] == RECORDS] == [43]

    # An agent that lost its policy (reinstalled, data cleared) says another version: it gets the
    # policy, though nothing changed on the server.
    agent.policy_version = None
    answer = agent.sync(inventory=False)
    assert "policy" in answer and answer["policy_version"] == version


def test_the_policy_reads_no_table_that_does_not_raise_the_generation(
    enroll_app: Any, tree: Any, enroll_settings: Any
) -> None:
    factory = enroll_app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        device = Device(platform="android", serial_number="R52T00042", enrollment_state="enrolled")
        s.add(device)
        s.flush()
        orgunits.assign_device(s, device, s.get(OrgUnit, tree.ambulance.id), actor=ADMIN)
        profile = create_profile_from_template(s, ADMIN, "station-wifi", identifier="jp.example.fd.wifi")
        assign_profile(s, enroll_settings, profile, s.get(OrgUnit, tree.station.id), actor=ADMIN)
        set_update_policy(s, ADMIN, tree.hq.id, android_mode="windowed", install_time="02:00")
        block_app(s, s.get(OrgUnit, tree.station.id), "android", "com.example.game", actor=ADMIN)
        apk = build_apk(RECORDS, 42, "4.2", signed_by=signer("ems-vendor"))
        app = upload_package(s, "android_apk", "records.apk", apk, actor=ADMIN)
        require_app(
            s, s.get(OrgUnit, tree.ambulance.id), app, configuration={"u": "{unit_name}"}, actor=ADMIN
        )
        device_id = device.id

    read: set[str] = set()

    here = threading.get_ident()

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() != here:
            return  # the app's own threads (readiness deliveries, the audit sealer)
        read.update(re.findall(r"\b(?:FROM|JOIN)\s+\"?(\w+)", statement, re.IGNORECASE))

    engine = enroll_app.extensions["hikeshi"].engine
    with factory() as s:
        device = s.get(Device, device_id)
        event.listen(engine, "before_cursor_execute", note)
        try:
            policy = current_policy(
                s, device, secret_key=enroll_settings.secret_key, public_url=enroll_settings.public_url
            )
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert policy.policy["systemUpdate"]["type"] == "WINDOWED" and policy.app_sources
    read.discard("unit_up")  # the unit chain's recursive query names its own rows so
    assert read <= set(POLICY_INPUT_TABLES), (
        f"read, but no trigger raises the generation: {read - set(POLICY_INPUT_TABLES)}"
    )
    assert {"profiles", "profile_assignments", "os_update_policies", "unit_app_rules", "app_packages"} <= read


def test_every_watched_table_has_its_trigger(enroll_app: Any) -> None:
    engine = enroll_app.extensions["hikeshi"].engine
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(
                text("SELECT event_object_table, event_manipulation FROM information_schema.triggers")
            ).all()
            found = {(table, action.lower()) for table, action in rows}
        else:
            names = conn.execute(text("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")).all()
            found = {
                (table, action.lower())
                for table, sql in names
                for action in re.findall(r"AFTER (INSERT|UPDATE|DELETE) ON", sql)
                if "policy_generation" in sql
            }
    wanted = {(table, action) for table in POLICY_INPUT_TABLES for action in ("insert", "update", "delete")}
    assert wanted <= found, f"no trigger: {sorted(wanted - found)}"
