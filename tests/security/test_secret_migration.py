"""Issue 15 items 1 and 2, for data written before the fix: migration 0006 seals the Wi-Fi
passphrases of stored profiles (with the instance secret `hikeshi db upgrade` passes), drops
shared renderings that carry one, strips them from InstallProfile commands (an undelivered one
is then rendered with the secret at delivery), and strips UnlockTokens from raw check-ins."""

from __future__ import annotations

import base64
import os
import plistlib
from collections.abc import Iterator

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.ca import Credential
from mdm.ground.db import make_engine, upgrade_database
from mdm.ground.models import (
    Command,
    CommandResult,
    CommandStatus,
    Device,
    DeviceMessage,
    EnrollmentState,
    Profile,
    ProfileRendering,
    ProfileVersion,
)
from mdm.ground.signing import sign_profile
from profiles.apple_render import render_apple
from profiles.rendering import RenderContext
from profiles.secret_settings import is_sealed, unseal_value
from profiles.spec import assign_payload_uuids, validate_spec
from tests.conftest import _drop_postgres_database, _fresh_postgres_database
from tests.profiles.samples import spec_with
from tests.security.scan import scan_database
from tests.support.pki import make_ca

PSK = "Old-Clear-PSK-2025"
UNLOCK = os.urandom(40)
KEY = "instance-secret-for-the-migration-test"


@pytest.fixture
def old_database(tmp_path) -> Iterator[str]:
    base = os.environ.get("HIKESHI_TEST_DATABASE_URL")
    if base:
        url, name = _fresh_postgres_database(base)
        yield url
        _drop_postgres_database(base, name)
    else:
        yield f"sqlite:///{tmp_path / 'old.db'}"


def _fill_as_before_the_fix(url: str) -> None:
    engine = make_engine(url)
    spec = validate_spec(
        spec_with(
            {"kind": "wifi", "settings": {"ssid": "OLD", "security": "wpa2_personal", "password": PSK}},
            identifier="jp.example.fd.old",
        )
    )
    uuids = assign_payload_uuids(spec)
    plist = render_apple(spec, RenderContext(), version=1, payload_uuids=uuids).content
    assert PSK.encode() in plist
    cert, key = make_ca("Old Profile Signer")
    signed = sign_profile(plist, Credential(cert, key, 0))
    now = clock.now()
    with Session(engine) as s:
        # The device, too, by a Core insert of the columns 0007 has (0025 added the agent policy's).
        device_id = s.execute(
            insert(Device.__table__).values(
                udid="OLD-UDID", platform="apple", enrollment_state=EnrollmentState.ENROLLED, created_at=now
            )
        ).inserted_primary_key[0]
        profile = Profile(
            identifier="jp.example.fd.old", name_ja="旧", name_en="Old", spec=spec, payload_uuids=uuids
        )
        s.add(profile)
        s.flush()
        s.add(
            ProfileVersion(profile_id=profile.id, version=1, spec=spec, payload_uuids=uuids, created_by="a")
        )
        s.add(
            ProfileRendering(
                profile_id=profile.id, version=1, platform="apple", content=signed, sha256="0" * 64
            )
        )
        # A Core insert naming only the columns 0007 has (later migrations added commands.batch
        # and commands.sealed_secret, which today's model would write).
        for n, status in enumerate((CommandStatus.QUEUED, CommandStatus.ACKNOWLEDGED)):
            s.execute(
                insert(Command.__table__).values(
                    uuid=f"OLD-{n}",
                    device_id=device_id,
                    request_type="InstallProfile",
                    params={"Payload": base64.b64encode(signed).decode()},
                    priority=10,
                    status=status,
                    requested_by="a",
                    queued_at=now,
                    delivery_count=0,
                    repushes=0,
                )
            )
        token_update = plistlib.dumps(
            {"MessageType": "TokenUpdate", "UDID": "OLD-UDID", "UnlockToken": UNLOCK}
        )
        # Core inserts: the rows exactly as the old code wrote them (no model validation).
        s.execute(
            insert(DeviceMessage.__table__).values(
                device_id=device_id, message_type="TokenUpdate", raw=token_update, received_at=now
            )
        )
        command_id = s.scalar(select(Command.id).where(Command.uuid == "OLD-1"))
        s.execute(
            insert(CommandResult.__table__).values(
                command_id=command_id,
                status="Acknowledged",
                raw=plistlib.dumps(
                    {"Status": "Acknowledged", "ActivationLockBypassCode": "BYPASS-CODE-1234"}
                ),
                received_at=now,
            )
        )
        s.commit()
    engine.dispose()


# The revision before the sealing migration: rows are written with today's models, as the old
# code wrote them, so the schema must be the one just before 0008.
BEFORE_SEALING = "0007"


def test_migration_seals_and_strips_what_was_stored_in_clear(old_database):
    upgrade_database(old_database, BEFORE_SEALING)
    _fill_as_before_the_fix(old_database)
    engine = make_engine(old_database)
    hits, _ = scan_database(engine, {"psk": PSK, "unlock": UNLOCK})
    assert hits, "the old rows must hold the secrets in clear for this test to mean anything"

    with pytest.raises(RuntimeError, match="hikeshi db upgrade"):
        upgrade_database(old_database)  # without the instance secret nothing can be sealed
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == BEFORE_SEALING

    upgrade_database(old_database, secret_key=KEY)
    hits, values = scan_database(engine, {"psk": PSK, "unlock": UNLOCK, "bypass": "BYPASS-CODE-1234"})
    assert values > 40 and hits == []
    with Session(engine) as s:
        for spec in [s.scalars(select(Profile.spec)).one(), s.scalars(select(ProfileVersion.spec)).one()]:
            sealed = spec["payloads"][0]["settings"]["password"]
            assert is_sealed(sealed) and unseal_value(KEY, sealed) == PSK
        assert s.scalars(select(ProfileRendering)).all() == []
        commands = {c.uuid: c for c in s.scalars(select(Command))}
        profile_id = s.scalar(select(Profile.id))
        assert commands["OLD-0"].params["DeviceIdentity"] == {"profile_id": profile_id, "version": 1}
        assert "DeviceIdentity" not in commands["OLD-1"].params
        for command in commands.values():
            document = plistlib.loads(base64.b64decode(command.params["Payload"]))
            [wifi] = [p for p in document["PayloadContent"] if p["PayloadType"] == "com.apple.wifi.managed"]
            assert "Password" not in wifi and wifi["SSID_STR"] == "OLD"
        message = plistlib.loads(s.scalars(select(DeviceMessage.raw)).one())
        assert message["UnlockToken"] == "[redacted]" and message["UDID"] == "OLD-UDID"
    engine.dispose()
