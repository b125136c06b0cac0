"""Apps and Books end to end against the simulator: token upload → asset sync (paged) → a
license asked for a serial (pending, then assigned when the event completes) → released; the
location running out of licenses; 429 with Retry-After; an expired or revoked token; and the
token never shown in the database in clear, the audit, the logs or an error."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.models import AuditEvent, VppAsset, VppAssignment, VppEvent, VppToken
from mdm.services.vpp.provider import VppLicenseProvider
from mdm.services.vpp.schedule import run_sync, scheduled_sync
from tests.vpp.conftest import SECRET


def _provider(settings: Any, waits: list[float] | None = None) -> VppLicenseProvider:
    return VppLicenseProvider(settings, sleep=(waits.append if waits is not None else lambda _s: None))


def test_upload_sync_assign_release(
    vpp: Any, vpp_settings: Any, uploaded: int, session_factory: sessionmaker[Session], caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    service = vpp.service
    service.add_asset("1234567890", 3)  # the dispatch terminal app
    service.add_asset("2222222222", 1)
    service.add_asset("3333333333", 5, device_assignable=False)

    result = run_sync(session_factory, vpp_settings)
    assert result["location"] == "本部" and result["assets"] == 3 and result["pages"] == 2
    with session_factory() as session:
        asset = session.scalars(select(VppAsset).where(VppAsset.adam_id == "1234567890")).one()
        assert (asset.total_count, asset.assigned_count, asset.available_count) == (3, 0, 3)

    provider = _provider(vpp_settings)
    with session_factory() as session:
        first = provider.ensure_device_license(session, adam_id="1234567890", serial_number="DMPX1001")
        session.commit()
    assert first.state == "pending"
    assert ("1234567890", "DMPX1001") not in service.assigned  # asynchronous: not yet done

    with session_factory() as session:
        # The service still answers PENDING for its first status poll.
        again = provider.ensure_device_license(session, adam_id="1234567890", serial_number="DMPX1001")
        session.commit()
        assert again.state == "pending"
        done = provider.ensure_device_license(session, adam_id="1234567890", serial_number="DMPX1001")
        session.commit()
    assert done.state == "assigned"
    assert ("1234567890", "DMPX1001") in service.assigned
    calls = [p for _m, p, _s in service.log]
    assert calls.count("/assets/associate") == 1  # asked once, then only polled

    with session_factory() as session:
        assert provider.ensure_device_license(
            session, adam_id="3333333333", serial_number="DMPX1001"
        ).state == ("unavailable")
        assert (
            provider.ensure_device_license(session, adam_id="9999", serial_number="DMPX1001").state
            == "unavailable"
        )
        released = provider.release_device_license(session, adam_id="1234567890", serial_number="DMPX1001")
        session.commit()
    assert released.state == "pending"
    service.complete_events()
    with session_factory() as session:
        gone = provider.release_device_license(session, adam_id="1234567890", serial_number="DMPX1001")
        session.commit()
        assert gone == type(gone)("unavailable", "not assigned")
        assert session.scalars(select(VppAssignment)).all() == []
        assert {e.status for e in session.scalars(select(VppEvent))} == {"COMPLETE"}
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert actions[:3] == ["vpp.token_uploaded", "vpp.token_claimed", "vpp.synced"]
        assert "vpp.license_requested" in actions and "vpp.license_release_requested" in actions
        audit_text = " ".join(str(e.details) for e in session.scalars(select(AuditEvent)))
        sealed = session.scalars(select(VppToken)).one().token_sealed
    assert ("1234567890", "DMPX1001") not in service.assigned
    # The bearer went to the service on every call, and nowhere else.
    assert all(h == f"Bearer {service.token}" for h in service.authorizations)
    assert SECRET not in audit_text and service.token not in audit_text
    assert service.token.encode() not in sealed and SECRET.encode() not in sealed
    assert service.token not in caplog.text and SECRET not in caplog.text


def test_out_of_licenses_is_unavailable(
    vpp: Any, vpp_settings: Any, uploaded: int, session_factory: sessionmaker[Session]
) -> None:
    service = vpp.service
    service.add_asset("2222222222", 1)
    service.event_delay = 0
    run_sync(session_factory, vpp_settings)
    provider = _provider(vpp_settings)
    with session_factory() as session:
        assert (
            provider.ensure_device_license(session, adam_id="2222222222", serial_number="A1").state
            == "pending"
        )
        assert (
            provider.ensure_device_license(session, adam_id="2222222222", serial_number="A1").state
            == "assigned"
        )
        # The local count says none is left: refused without asking the service.
        out = provider.ensure_device_license(session, adam_id="2222222222", serial_number="B2")
        session.commit()
    assert out.state == "unavailable" and "no license left" in (out.reason or "")
    assert [p for _m, p, _s in service.log].count("/assets/associate") == 1

    # Counts went stale (someone assigned the last license in ABM): the service's own failure.
    with session_factory() as session:
        asset = session.scalars(select(VppAsset)).one()
        asset.available_count = 1
        session.commit()
        assert (
            provider.ensure_device_license(session, adam_id="2222222222", serial_number="C3").state
            == "pending"
        )
        failed = provider.ensure_device_license(session, adam_id="2222222222", serial_number="C3")
        session.commit()
        row = session.scalars(select(VppAssignment).where(VppAssignment.serial_number == "C3")).one()
        assert (row.state, row.reason) == ("failed", "no license left for this app in the location")
        assert session.scalars(select(VppAsset)).one().available_count == 0
    assert failed.state == "unavailable"
    assert service.assigned == {("2222222222", "A1")}


def test_rate_limit_honours_retry_after(
    vpp: Any, vpp_settings: Any, uploaded: int, session_factory: sessionmaker[Session]
) -> None:
    service = vpp.service
    service.add_asset("1234567890", 2)
    service.throttle_next(2, retry_after="7")
    waits: list[float] = []
    run_sync(session_factory, vpp_settings, sleep=waits.append)
    assert waits == [7.0, 7.0]
    assert [s for _m, _p, s in service.log][:3] == [429, 429, 200]

    # Throttled past the provider's few attempts: unavailable for now, nothing recorded.
    service.throttle_next(5, retry_after="1")
    provider = _provider(vpp_settings, waits := [])
    with session_factory() as session:
        outcome = provider.ensure_device_license(session, adam_id="1234567890", serial_number="Z9")
        session.commit()
        assert session.scalars(select(VppAssignment)).all() == []
    assert outcome.state == "unavailable" and "not answering" in (outcome.reason or "")
    assert waits == [1.0, 1.0]


@pytest.mark.parametrize(("state", "number"), [("expired", 9621), ("revoked", 9625)])
def test_unusable_token_is_said_plainly(
    vpp: Any,
    vpp_settings: Any,
    uploaded: int,
    session_factory: sessionmaker[Session],
    state: str,
    number: int,
) -> None:
    from mdm.services.vpp.client import VppError

    vpp.service.add_asset("1234567890", 2)
    run_sync(session_factory, vpp_settings)
    vpp.service.token_state = state
    with pytest.raises(VppError) as raised:
        run_sync(session_factory, vpp_settings)
    assert raised.value.error_number == number and raised.value.token_unusable
    assert SECRET not in str(raised.value) and vpp.service.token not in str(raised.value)
    with session_factory() as session:
        token = session.scalars(select(VppToken)).one()
        assert token.last_error is not None and str(number) in token.last_error
        outcome = _provider(vpp_settings).ensure_device_license(
            session, adam_id="1234567890", serial_number="Q1"
        )
    assert outcome.state == "unavailable" and "cannot be used" in (outcome.reason or "")


def test_not_configured_and_locally_expired(
    vpp_settings: Any, session_factory: sessionmaker[Session], vpp: Any
) -> None:
    from datetime import timedelta

    from mdm.ground import clock
    from mdm.ground.audit import Actor
    from mdm.services.vpp.token import store_token
    from tests.support.vpp_service import token_file

    provider = _provider(vpp_settings)
    with session_factory() as session:
        assert (
            provider.ensure_device_license(session, adam_id="1", serial_number="S").state == "not_configured"
        )
        assert (
            provider.release_device_license(session, adam_id="1", serial_number="S").state == "not_configured"
        )
    assert scheduled_sync(session_factory, vpp_settings) == {"configured": False}
    soon = (clock.now() + timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    with session_factory() as session:
        store_token(
            session,
            vpp_settings,
            token_file(exp=soon, secret=SECRET).encode(),
            actor=Actor("a", "admin", None),
        )
        session.commit()
    vpp.service.token = token_file(exp=soon, secret=SECRET)  # not the same file: refused by the service
    with session_factory() as session:
        row = session.scalars(select(VppToken)).one()
        vpp.service.token = ""  # any call would fail: an expired token must not be sent
        row.expires_at = clock.now() - timedelta(minutes=1)
        session.commit()
        outcome = provider.ensure_device_license(session, adam_id="1", serial_number="S")
    assert outcome.state == "unavailable" and "expired" in (outcome.reason or "")
    assert scheduled_sync(session_factory, vpp_settings)["expired"] is True
    assert vpp.service.log == []


def test_a_second_process_recording_the_same_license_updates_the_first_row(
    vpp: Any, vpp_settings: Any, uploaded: int, session_factory: sessionmaker[Session]
) -> None:
    """Two processes asking for one (app, serial) at the same moment: the one that loses the
    unique key updates the winner's row instead of failing its caller (its transaction lives on)."""
    from mdm.services.vpp.provider import _record

    if session_factory.kw["bind"].dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's; on SQLite every write transaction runs alone")
    vpp.service.add_asset("1234567890", 3)
    run_sync(session_factory, vpp_settings)
    with session_factory() as loser:
        asset = loser.scalars(select(VppAsset).where(VppAsset.adam_id == "1234567890")).one()
        # The other process commits its row after this one looked and found none.
        with session_factory() as winner:
            winner_asset = winner.scalars(select(VppAsset).where(VppAsset.adam_id == "1234567890")).one()
            _record(winner, None, winner_asset, "DMPX2001", "pending", "event-1")
            winner.commit()
        row = _record(loser, None, asset, "DMPX2001", "assigned", None)
        loser.commit()
        assert row.state == "assigned"
    with session_factory() as session:
        [only] = session.scalars(select(VppAssignment).where(VppAssignment.serial_number == "DMPX2001")).all()
        assert only.state == "assigned" and only.event_id is None
