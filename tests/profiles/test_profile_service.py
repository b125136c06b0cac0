"""Profile service on a real database: versions, history, stable UUIDs, audit, no half-writes."""

from __future__ import annotations

import copy
import plistlib
from typing import Any

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.audit import Actor, verify_chain
from mdm.ground.models import AuditEvent, Profile, ProfileVersion
from profiles.secret_settings import SecretKeyMissing, is_sealed, unseal_value
from profiles.service import (
    create_profile,
    create_profile_from_template,
    get_profile,
    get_profile_by_identifier,
    get_profile_version,
    list_profiles,
    render_profile,
    update_profile,
)
from profiles.spec import profile_uuid
from profiles.templates import template_spec
from tests.profiles.samples import render_context, spec_with, station_wifi

ADMIN = Actor("admin@hq", "admin", "192.0.2.10")
OTHER = Actor("it@station-1", "admin")


def field_spec(**changes: Any) -> dict[str, Any]:
    spec = template_spec("myna-kyukyu", identifier="jp.lg.example.fd.myna")
    spec.update(changes)
    return spec


def count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def apple_uuids(profile: Profile | ProfileVersion, context: Any) -> tuple[str, list[str]]:
    document = plistlib.loads(render_profile(profile, "apple", context).content)
    return document["PayloadUUID"], [p["PayloadUUID"] for p in document["PayloadContent"]]


def test_create_stores_version_1_with_history_and_an_audit_event(session: Session, frozen_clock: Any) -> None:
    profile = create_profile(session, ADMIN, field_spec())
    assert profile.id is not None
    assert profile.version == 1
    assert profile.identifier == "jp.lg.example.fd.myna"
    assert profile.name_ja == "マイナ救急"
    assert profile.created_at == profile.updated_at == frozen_clock.current
    assert set(profile.payload_uuids) == {"passcode.1", "restrictions.1", "ambulance-wifi"}
    [history] = profile.versions
    assert (history.version, history.created_by, history.spec) == (1, "admin@hq", profile.spec)
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "profile.created")).one()
    assert event.target_type == "profile" and event.target_id == str(profile.id)
    assert event.actor == "admin@hq"
    assert event.details["identifier"] == "jp.lg.example.fd.myna"
    assert event.details["version"] == 1
    assert "wifi:ambulance-wifi" in event.details["payloads"]
    assert verify_chain(session).ok


def test_update_bumps_the_version_and_keeps_payload_uuids(session: Session, frozen_clock: Any) -> None:
    context = render_context()
    profile = create_profile(session, ADMIN, field_spec())
    v1_uuids = dict(profile.payload_uuids)
    v1_top, v1_payloads = apple_uuids(profile, context)

    frozen_clock.advance(hours=1)
    spec = copy.deepcopy(profile.spec)
    spec["payloads"][0]["settings"]["min_length"] = 8
    update_profile(session, OTHER, profile, spec)
    assert profile.version == 2
    assert profile.updated_at == frozen_clock.current != profile.created_at
    assert profile.payload_uuids == v1_uuids
    v2_top, v2_payloads = apple_uuids(profile, context)
    assert v2_payloads == v1_payloads
    assert (v1_top, v2_top) == (profile_uuid(profile.identifier, 1), profile_uuid(profile.identifier, 2))

    spec["name_en"] = "Ambulance tablet"
    update_profile(session, ADMIN, profile, spec)
    assert profile.version == 3 and profile.name_en == "Ambulance tablet"

    versions = session.scalars(
        select(ProfileVersion).where(ProfileVersion.profile_id == profile.id).order_by(ProfileVersion.version)
    ).all()
    assert [(v.version, v.created_by) for v in versions] == [
        (1, "admin@hq"),
        (2, "it@station-1"),
        (3, "admin@hq"),
    ]
    assert versions[0].spec["payloads"][0]["settings"]["min_length"] == 6
    assert versions[1].spec["payloads"][0]["settings"]["min_length"] == 8

    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "profile.updated").order_by(AuditEvent.id)
    ).all()
    assert [(e.details["from_version"], e.details["version"]) for e in events] == [(1, 2), (2, 3)]
    assert events[0].details["changed_payloads"] == {"added": [], "removed": [], "changed": ["passcode.1"]}
    assert events[0].actor == "it@station-1"
    session.commit()  # PostgreSQL seals the transaction's events into the chain after its commit
    assert verify_chain(session).ok


def test_an_identical_spec_is_not_a_new_version(session: Session) -> None:
    profile = create_profile(session, ADMIN, field_spec())
    update_profile(session, ADMIN, profile, field_spec())
    assert profile.version == 1
    assert count(session, ProfileVersion) == 1
    assert count(session, AuditEvent) == 1


def test_payloads_keep_their_uuid_when_others_are_added_and_a_changed_kind_gets_a_new_one(
    session: Session,
) -> None:
    spec = spec_with(
        {"kind": "wifi", "key": "station", "settings": station_wifi()},
        {"kind": "passcode", "key": "lock", "settings": {"min_length": 6}},
        identifier="jp.lg.example.fd.keys",
    )
    profile = create_profile(session, ADMIN, spec)
    before = dict(profile.payload_uuids)
    grown = copy.deepcopy(spec)
    grown["payloads"].insert(0, {"kind": "wifi", "key": "guest", "settings": station_wifi(ssid="GUEST")})
    grown["payloads"][2] = {"kind": "restrictions", "key": "lock", "settings": {"allow_camera": False}}
    update_profile(session, ADMIN, profile, grown)
    assert profile.payload_uuids["station"] == before["station"]
    assert profile.payload_uuids["lock"] != before["lock"]
    assert set(profile.payload_uuids) == {"guest", "station", "lock"}
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "profile.updated")).one()
    assert event.details["changed_payloads"] == {"added": ["guest"], "removed": [], "changed": ["lock"]}


def test_the_identifier_cannot_change(session: Session) -> None:
    profile = create_profile(session, ADMIN, field_spec())
    with pytest.raises(ValidationError) as info:
        update_profile(session, ADMIN, profile, field_spec(identifier="jp.lg.example.fd.other"))
    assert "identifier" in info.value.messages
    assert profile.version == 1


def test_a_duplicate_identifier_is_rejected_naming_the_field(session: Session) -> None:
    create_profile(session, ADMIN, field_spec())
    with pytest.raises(ValidationError) as info:
        create_profile(session, ADMIN, field_spec(name_ja="二つ目"))
    assert "identifier" in info.value.messages
    assert count(session, Profile) == 1 and count(session, AuditEvent) == 1


def test_a_bad_spec_writes_nothing(session: Session) -> None:
    bad = field_spec()
    bad["payloads"][2]["settings"]["ssid"] = "x" * 40
    with pytest.raises(ValidationError) as info:
        create_profile(session, ADMIN, bad)
    assert "ssid" in info.value.messages["payloads"][2]["settings"]
    profile = create_profile(session, ADMIN, field_spec())
    bad_update = copy.deepcopy(profile.spec)
    bad_update["payloads"][0]["settings"]["min_length"] = 0
    with pytest.raises(ValidationError) as info:
        update_profile(session, ADMIN, profile, bad_update)
    assert "min_length" in info.value.messages["payloads"][0]["settings"]
    assert profile.version == 1
    assert (
        count(session, Profile) == 1
        and count(session, ProfileVersion) == 1
        and count(session, AuditEvent) == 1
    )


def test_profiles_survive_a_commit_and_render_the_same(session_factory: sessionmaker[Session]) -> None:
    context = render_context()
    with session_factory() as session:
        profile = create_profile(session, ADMIN, field_spec())
        spec = copy.deepcopy(profile.spec)
        spec["payloads"][1]["settings"]["allow_camera"] = False
        update_profile(session, ADMIN, profile, spec)
        before_apple = render_profile(profile, "apple", context).content
        before_android = render_profile(profile, "android", context).content
        profile_id = profile.id
        session.commit()
    with session_factory() as session:
        loaded = get_profile(session, profile_id)
        assert loaded is not None and loaded.version == 2
        assert get_profile_by_identifier(session, "jp.lg.example.fd.myna") is loaded
        assert [p.identifier for p in list_profiles(session)] == ["jp.lg.example.fd.myna"]
        assert render_profile(loaded, "apple", context).content == before_apple
        assert render_profile(loaded, "android", context).content == before_android
        old = get_profile_version(session, loaded, 1)
        assert old is not None
        old_document = plistlib.loads(render_profile(old, "apple", context).content)
        assert old_document["PayloadUUID"] == profile_uuid(loaded.identifier, 1)
        [restrictions] = [
            p for p in old_document["PayloadContent"] if p["PayloadType"] == "com.apple.applicationaccess"
        ]
        assert restrictions["allowCamera"] is True
        with pytest.raises(ValidationError):
            render_profile(loaded, "windows", context)


def test_a_profile_can_start_from_a_template(session: Session) -> None:
    profile = create_profile_from_template(
        session, ADMIN, "station-wifi", identifier="jp.lg.example.fd.station-wifi", name_ja="本署Wi-Fi"
    )
    assert profile.name_ja == "本署Wi-Fi" and profile.name_en == "Station Wi-Fi"
    assert profile.spec["payloads"][0]["settings"]["certificate_source"] == "enrollment_identity"
    with pytest.raises(ValidationError) as info:
        create_profile_from_template(session, ADMIN, "nope", identifier="jp.lg.example.fd.nope")
    assert "template" in info.value.messages


SECRET_KEY = "test-instance-secret"


def test_a_wifi_password_stays_out_of_the_audit_trail(session: Session) -> None:
    spec = spec_with(
        {
            "kind": "wifi",
            "settings": {"ssid": "GUEST", "security": "wpa2_personal", "password": "kasai-2025-secret"},
        },
        identifier="jp.lg.example.fd.guest",
    )
    profile = create_profile(session, ADMIN, spec, secret_key=SECRET_KEY)
    changed = copy.deepcopy(profile.spec)
    changed["payloads"][0]["settings"]["password"] = "kasai-2026-secret"
    update_profile(session, ADMIN, profile, changed, secret_key=SECRET_KEY)
    for event in session.scalars(select(AuditEvent)):
        assert "secret" not in repr(event.details)
    stored = profile.spec["payloads"][0]["settings"]["password"]
    assert is_sealed(stored) and unseal_value(SECRET_KEY, stored) == "kasai-2026-secret"


def test_a_profile_with_secrets_is_not_stored_without_the_instance_secret(session: Session) -> None:
    spec = spec_with(
        {
            "kind": "wifi",
            "settings": {"ssid": "GUEST", "security": "wpa2_personal", "password": "kasai-2025"},
        },
        identifier="jp.lg.example.fd.guest",
    )
    with pytest.raises(SecretKeyMissing):
        create_profile(session, ADMIN, spec)
