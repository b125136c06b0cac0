"""Issue 15 item 3: audit details never keep a secret, whatever its key's spelling or depth, and
the bulk path (enqueue_commands) and the single path (enqueue_command) record the same redacted,
digested details on one unbroken chain."""

from __future__ import annotations

import base64
import json
import os

from sqlalchemy import select

from commands.queue import CommandRequest, enqueue_command, enqueue_commands
from mdm.ground import clock
from mdm.ground.audit import (
    REDACTED,
    SYSTEM,
    Actor,
    AuditEntry,
    is_secret_key,
    record_event,
    record_events,
    verify_chain,
)
from mdm.ground.models import AuditEvent, Device, EnrollmentState

ADMIN = Actor("admin", "admin")


def _stored(session, event: AuditEvent) -> str:
    session.commit()
    session.expire_all()
    return json.dumps(session.get(AuditEvent, event.id).details, ensure_ascii=False)


def test_secrets_under_any_spelling_and_depth_are_redacted(session):
    details = {
        "users": [{"name": "taro", "Password": "pw-in-a-list-1"}],
        "UserPassword": "pw-camel-2",
        "api_token": "tok-3",
        "totp_secret": "JBSWY3DPEHPK3PXP",
        "nested": {"deeper": [[{"UnlockToken": "unlock-4"}]]},
        "wifi": {"PSK": "psk-5", "EAPClientConfiguration": {"UserPassword": "eap-6"}},
        "scep": {"Challenge": "challenge-7"},
        "private_key": "-----BEGIN PRIVATE KEY-----8",
        "PIN": "123456",
        "PushMagic": "magic-9",
    }
    event = record_event(session, ADMIN, "test.secrets", details=details)
    stored = _stored(session, event)
    for secret in (
        "pw-in-a-list-1",
        "pw-camel-2",
        "tok-3",
        "JBSWY3DPEHPK3PXP",
        "unlock-4",
        "psk-5",
        "eap-6",
        "challenge-7",
        "PRIVATE KEY",
        "123456",
        "magic-9",
    ):
        assert secret not in stored, secret
    assert event.details["users"][0] == {"name": "taro", "Password": REDACTED}
    assert event.details["nested"]["deeper"][0][0]["UnlockToken"] == REDACTED


def test_descriptions_of_secrets_stay_readable(session):
    details = {
        "enrollment_token_id": 12,
        "token_prefix": "ab12",
        "key_size": 2048,
        "passcode_compliant": True,
        "passwordMinimumLength": 6,
        "challenge_id": 3,
        "secrets_redacted": False,
        "password": None,
    }
    event = record_event(session, ADMIN, "test.descriptions", details=details)
    assert event.details == details


def test_secret_key_names():
    for name in ("password", "UserPassword", "api_token", "totp_secret", "apns_key", "Passphrase", "pin"):
        assert is_secret_key(name), name
    for name in (
        "token_id",
        "token_prefix",
        "key_size",
        "device_id",
        "serial_number",
        "request_type",
        "ProductKey",
    ):
        assert not is_secret_key(name), name


def test_large_values_are_digested(session):
    big = "A" * 5000
    event = record_event(session, ADMIN, "test.big", details={"blob": big, "items": [big]})
    assert event.details["blob"] == {"sha256": event.details["blob"]["sha256"], "chars": 5000}
    assert event.details["items"][0]["chars"] == 5000
    assert big not in _stored(session, event)


def _device(session, udid: str) -> Device:
    device = Device(
        udid=udid,
        platform="apple",
        enrollment_state=EnrollmentState.ENROLLED,
        enrolled_at=clock.now(),
        created_at=clock.now(),
    )
    session.add(device)
    session.flush()
    return device


def test_single_and_bulk_enqueue_write_the_same_digest_and_one_chain(session):
    profile = base64.b64encode(b"<plist>" + os.urandom(8000) + b"</plist>").decode()
    first = _device(session, "UDID-AUDIT-1")
    second = _device(session, "UDID-AUDIT-2")
    single = enqueue_command(session, first, "InstallProfile", {"Payload": profile}, actor=ADMIN, push=False)
    enqueue_commands(
        session,
        [
            CommandRequest(first, "InstallProfile", {"Payload": profile}),
            CommandRequest(second, "DeviceLock", {"Message": "消防本部へ連絡"}),
        ],
        actor=ADMIN,
        push=False,
    )
    session.commit()
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "command.queued").order_by(AuditEvent.id)
    ).all()
    assert events[0].target_id == single.uuid
    digests = [e.details["params"]["Payload"] for e in events[:2]]
    assert digests[0] == digests[1] and set(digests[0]) == {"sha256", "chars"}
    assert events[2].details["params"] == {"Message": "消防本部へ連絡"}
    assert profile[:200] not in json.dumps([e.details for e in events])
    assert verify_chain(session).ok


def test_bulk_append_links_to_the_chain(session):
    record_event(session, SYSTEM, "test.before")
    entries = [AuditEntry("test.bulk", "thing", n, {"secret": f"s{n}"}) for n in range(3)]
    events = record_events(session, SYSTEM, entries)
    session.commit()
    for event in events:  # PostgreSQL sealed them after the commit, in a session of its own
        session.refresh(event)
    assert [e.seq for e in events] == [2, 3, 4]
    assert all(e.details == {"secret": REDACTED} for e in events)
    assert verify_chain(session).ok
