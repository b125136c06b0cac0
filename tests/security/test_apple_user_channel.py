"""Issue 13, attack 4: user-channel messages (a Mac user's mdmclient agent, a Shared iPad user)
must never touch the device channel's push token, PushMagic, topic or queue. Hikeshi manages the
device channel only and declines the user channel with 410 Gone, as NanoMDM does for a user it
does not manage. The plists carry the keys Apple's check-in schema lists for the user channel
(mdm/checkin/tokenupdate.yaml: UserID, UserShortName, UserLongName, NotOnConsole)."""

from __future__ import annotations

import plistlib
import secrets
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.queue import enqueue_command
from mdm.ground.models import Command, CommandStatus
from tests.enrollment.conftest import ADMIN
from tests.security.identity_support import device_of, enrolled_ipad, snapshot
from tests.support.apple_device import SimulatedIPad

# On Shared iPad the user channel's UserID is always this (schema: "no authentication will occur").
SHARED_IPAD_USER_ID = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"


def _plist(message: dict[str, Any]) -> bytes:
    return plistlib.dumps(message, fmt=plistlib.FMT_XML, sort_keys=True)


def shared_ipad_user_token_update(ipad: SimulatedIPad) -> bytes:
    """A Shared iPad user's TokenUpdate: a Managed Apple Account in UserShortName."""
    return _plist(
        {
            "MessageType": "TokenUpdate",
            "UDID": ipad.udid,
            "Topic": ipad.topic,
            "Token": secrets.token_bytes(32),
            "PushMagic": str(uuid.uuid4()).upper(),
            "UserID": SHARED_IPAD_USER_ID,
            "UserShortName": "kyukyu3@fd.example.jp",
            "AwaitingConfiguration": False,
        }
    )


def mac_user_token_update(ipad: SimulatedIPad) -> bytes:
    """A macOS user channel's TokenUpdate (mdmclient agent of the logged-in user)."""
    return _plist(
        {
            "MessageType": "TokenUpdate",
            "UDID": ipad.udid,
            "Topic": ipad.topic,
            "Token": secrets.token_bytes(32),
            "PushMagic": str(uuid.uuid4()).upper(),
            "UserID": "6E2F8F0A-3C1B-4B8E-9D55-2B7F4C0E1A77",
            "UserShortName": "tanaka",
            "UserLongName": "田中 一郎",
            "NotOnConsole": False,
        }
    )


def _enrolled_with_lock(
    client: Any, session: Session, tree: Any, topic: str, make_token: Any
) -> SimulatedIPad:
    ipad = enrolled_ipad(client, make_token(tree.ambulance).secret, topic)
    enqueue_command(session, device_of(session, ipad.udid), "DeviceLock", {}, actor=ADMIN)
    session.commit()
    return ipad


def _device_channel(session: Session, ipad: SimulatedIPad) -> tuple[Any, ...]:
    device = device_of(session, ipad.udid)
    return device.push_token, device.push_magic, device.topic


def test_shared_ipad_user_token_update_leaves_the_device_channel_alone(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = _enrolled_with_lock(enroll_client, session, tree, push_topic, make_token)
    channel = _device_channel(session, ipad)
    before = snapshot(session)
    response = ipad.checkin(enroll_client, shared_ipad_user_token_update(ipad))
    assert response.status_code == 410 and b"user channel" in response.data
    assert snapshot(session) == before
    assert _device_channel(session, ipad) == channel == (ipad.token_hex, ipad.push_magic, push_topic)


def test_mac_user_token_update_leaves_the_device_channel_alone(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = _enrolled_with_lock(enroll_client, session, tree, push_topic, make_token)
    before = snapshot(session)
    assert ipad.checkin(enroll_client, mac_user_token_update(ipad)).status_code == 410
    assert snapshot(session) == before
    assert _device_channel(session, ipad) == (ipad.token_hex, ipad.push_magic, push_topic)


def test_user_channel_checkout_and_user_authenticate_are_declined(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = _enrolled_with_lock(enroll_client, session, tree, push_topic, make_token)
    before = snapshot(session)
    checkout = _plist(
        {"MessageType": "CheckOut", "UDID": ipad.udid, "Topic": push_topic, "UserID": SHARED_IPAD_USER_ID}
    )
    user_auth = _plist(
        {"MessageType": "UserAuthenticate", "UDID": ipad.udid, "UserID": "6E2F8F0A", "UserLongName": "田中"}
    )
    assert ipad.checkin(enroll_client, checkout).status_code == 410
    assert ipad.checkin(enroll_client, user_auth).status_code == 410
    assert snapshot(session) == before


def test_user_channel_idle_gets_no_device_command(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = _enrolled_with_lock(enroll_client, session, tree, push_topic, make_token)
    before = snapshot(session)
    for extra in (
        {"UserID": SHARED_IPAD_USER_ID, "UserShortName": "kyukyu3@fd.example.jp"},
        {"UserID": "6E2F8F0A-3C1B-4B8E-9D55-2B7F4C0E1A77", "UserShortName": "tanaka"},
        {"EnrollmentUserID": "tanaka-enrollment"},
        {"NotOnConsole": False},
    ):
        idle = _plist({"Status": "Idle", "UDID": ipad.udid, **extra})
        response = ipad.connect(enroll_client, idle)
        assert response.status_code == 410 and b"DeviceLock" not in response.data
    assert snapshot(session) == before
    lock = session.scalars(select(Command).where(Command.request_type == "DeviceLock")).one()
    assert (lock.status, lock.delivery_count) == (CommandStatus.QUEUED, 0)
    # The device channel itself still gets it.
    answer = ipad.connect(enroll_client, ipad.idle_body())
    assert answer.status_code == 200 and b"DeviceLock" in answer.data


def test_user_channel_result_cannot_acknowledge_a_device_command(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = _enrolled_with_lock(enroll_client, session, tree, push_topic, make_token)
    fetched = ipad.connect(enroll_client, ipad.idle_body())
    command_uuid = plistlib.loads(fetched.data)["CommandUUID"]
    before = snapshot(session)
    report = _plist(
        {
            "Status": "Acknowledged",
            "UDID": ipad.udid,
            "CommandUUID": command_uuid,
            "UserID": SHARED_IPAD_USER_ID,
        }
    )
    assert ipad.connect(enroll_client, report).status_code == 410
    assert snapshot(session) == before
