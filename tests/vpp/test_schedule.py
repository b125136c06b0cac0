"""The scheduled Apps and Books job and token replacement: pending events finished by the job
between syncs, assets synced only when due, one expiry alert per token, and a renewal for the
same location kept quietly while a token of another location is warned of (and the old
location's licenses are no longer taken as held)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import Alert, AuditEvent, VppAssignment, VppToken
from mdm.services.vpp.provider import VppLicenseProvider
from mdm.services.vpp.schedule import scheduled_sync
from mdm.services.vpp.token import expiry_warning, store_token
from tests.support.vpp_service import token_file
from tests.vpp.conftest import SECRET

ADMIN = Actor("admin:test", "admin", "127.0.0.1")


def test_job_polls_events_and_syncs_when_due(
    vpp: Any, vpp_settings: Any, uploaded: int, session_factory: sessionmaker[Session]
) -> None:
    service = vpp.service
    service.add_asset("1234567890", 4)
    first = scheduled_sync(session_factory, vpp_settings)
    assert first["due"] is True and first["assets"] == 1
    with session_factory() as session:
        provider = VppLicenseProvider(vpp_settings, sleep=lambda _s: None)
        assert (
            provider.ensure_device_license(session, adam_id="1234567890", serial_number="S1").state
            == "pending"
        )
        session.commit()
    service.log.clear()
    # Not due for assets: only the pending event is asked about (PENDING once, then COMPLETE).
    assert scheduled_sync(session_factory, vpp_settings)["events_completed"] == 0
    done = scheduled_sync(session_factory, vpp_settings)
    assert done["due"] is False and done["events_completed"] == 1
    assert [p for _m, p, _s in service.log] == ["/status", "/status"]
    with session_factory() as session:
        assert session.scalars(select(VppAssignment)).one().state == "assigned"
    # Nothing pending: the service is not asked at all.
    service.log.clear()
    assert scheduled_sync(session_factory, vpp_settings)["events_checked"] == 0
    assert service.log == []


def test_expiry_alert_once_and_banner_words(
    vpp: Any, vpp_settings: Any, session_factory: sessionmaker[Session]
) -> None:
    soon = (clock.now() + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    text = token_file(exp=soon, secret=SECRET)
    vpp.service.token = text
    with session_factory() as session:
        row = store_token(session, vpp_settings, text.encode(), actor=ADMIN)
        warning = expiry_warning(row)
        session.commit()
    assert warning is not None and warning.level == "warn" and "残り 9 日" in warning.ja
    assert scheduled_sync(session_factory, vpp_settings)["expiry_alert"] is True
    assert scheduled_sync(session_factory, replace(vpp_settings, vpp_sync_minutes=1))["expiry_alert"] is False
    with session_factory() as session:
        alerts = session.scalars(select(Alert).where(Alert.kind == "vpp.token_expiring")).all()
        assert len(alerts) == 1 and alerts[0].severity == "warning"
        assert SECRET not in str(alerts[0].details)


def test_renewal_keeps_location_and_another_location_is_warned(
    vpp: Any, vpp_settings: Any, uploaded: int, session_factory: sessionmaker[Session]
) -> None:
    service = vpp.service
    service.add_asset("1234567890", 4)
    service.event_delay = 0
    scheduled_sync(session_factory, vpp_settings)
    provider = VppLicenseProvider(vpp_settings, sleep=lambda _s: None)
    with session_factory() as session:
        provider.ensure_device_license(session, adam_id="1234567890", serial_number="S1")
        assert (
            provider.ensure_device_license(session, adam_id="1234567890", serial_number="S1").state
            == "assigned"
        )
        session.commit()

    # A renewal: a new file for the same location.
    renewed = token_file(secret="cmVuZXdlZC10b2tlbi0x")
    service.token = renewed
    with session_factory() as session:
        store_token(session, vpp_settings, renewed.encode(), actor=ADMIN)
        session.commit()
    with session_factory() as session:
        from mdm.services.vpp.schedule import run_sync

        assert run_sync(session_factory, vpp_settings)["location_changed"] is False
        token = session.scalars(select(VppToken).where(VppToken.active.is_(True))).one()
        assert token.location_name == "本部" and expiry_warning(token) is None
        assert session.scalars(select(VppAssignment)).one().state == "assigned"

    # Another location's token: warned, and the old location's license is not taken as held.
    other = token_file(secret="b3RoZXItbG9jYXRpb24tMg==")
    service.token, service.uid, service.location_name = other, "2049025000999999", "南分署"
    service.assigned.clear()
    with session_factory() as session:
        store_token(session, vpp_settings, other.encode(), actor=ADMIN)
        session.commit()
    from mdm.services.vpp.schedule import run_sync

    assert run_sync(session_factory, vpp_settings)["location_changed"] is True
    with session_factory() as session:
        token = session.scalars(select(VppToken).where(VppToken.active.is_(True))).one()
        warning = expiry_warning(token)
        assert warning is not None and "南分署" in warning.ja and "本部" in warning.ja
        assert session.scalars(select(VppAssignment)).all() == []
        assert session.scalars(select(Alert).where(Alert.kind == "vpp.location_changed")).one()
        changed = session.scalars(select(AuditEvent).where(AuditEvent.action == "vpp.location_changed")).one()
        assert changed.details["assignments_forgotten"] == 1
        outcome = provider.ensure_device_license(session, adam_id="1234567890", serial_number="S1")
        session.commit()
    assert outcome.state == "pending"  # asked anew of the new location


def test_token_claimed_once_and_another_mdm_refused(
    vpp: Any, vpp_settings: Any, uploaded: int, session_factory: sessionmaker[Session]
) -> None:
    from mdm.services.vpp.schedule import run_sync
    from mdm.services.vpp.sync import OtherMdm, mdm_id

    service = vpp.service
    run_sync(session_factory, vpp_settings)
    assert service.mdm_info == {"id": mdm_id(vpp_settings), "name": "Hikeshi MDM", "metadata": "0.1.0"}
    assert mdm_id(vpp_settings) == mdm_id(replace(vpp_settings))
    assert mdm_id(vpp_settings) != mdm_id(replace(vpp_settings, secret_key="another instance"))
    run_sync(session_factory, vpp_settings)
    assert [p for m, p, _s in service.log if m == "POST"] == ["/client/config"]  # claimed once

    service.mdm_info = {"id": "522d5c43-44ca-4f7e-ba7a-53570cf60765", "name": "Other MDM"}
    for _ in range(2):
        try:
            run_sync(session_factory, vpp_settings)
        except OtherMdm as exc:
            assert "Other MDM" in str(exc)
        else:
            raise AssertionError("a token in use by another MDM was taken over")
    assert service.mdm_info["name"] == "Other MDM"
    with session_factory() as session:
        token = session.scalars(select(VppToken)).one()
        assert token.last_error is not None and "another MDM" in token.last_error
        assert len(session.scalars(select(Alert).where(Alert.kind == "vpp.other_mdm")).all()) == 1


def test_event_never_confirmed_is_given_up_and_the_license_found(
    vpp: Any, vpp_settings: Any, uploaded: int, session_factory: sessionmaker[Session]
) -> None:
    from mdm.ground.models import VppEvent

    service = vpp.service
    service.add_asset("1234567890", 4)
    service.event_delay = 10_000  # the service never says COMPLETE
    scheduled_sync(session_factory, vpp_settings)
    provider = VppLicenseProvider(vpp_settings, sleep=lambda _s: None)
    with session_factory() as session:
        assert (
            provider.ensure_device_license(session, adam_id="1234567890", serial_number="S1").state
            == "pending"
        )
        session.commit()
    service.complete_events()  # done at Apple, but its status never reached us
    with session_factory() as session:
        event = session.scalars(select(VppEvent)).one()
        event.created_at = clock.now() - timedelta(hours=25)
        session.commit()
    service.log.clear()
    assert scheduled_sync(session_factory, vpp_settings)["events_completed"] == 1
    assert service.log == []  # given up without asking
    with session_factory() as session:
        row = session.scalars(select(VppAssignment)).one()
        assert row.state == "failed" and "within a day" in (row.reason or "")
        again = provider.ensure_device_license(session, adam_id="1234567890", serial_number="S1")
        session.commit()
    assert again.state == "assigned"  # found among the service's assignments, not asked twice
    assert [p for _m, p, _s in service.log].count("/assets/associate") == 0
