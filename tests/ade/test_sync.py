"""Sync against the device assignment service simulator, a real HTTP server on loopback:
OAuth 1.0a checked by the simulator, full fetch then cursor sync, expired sessions re-opened,
429 and 503 retried after Retry-After, expired cursors refetched, profiles defined per unit
and assigned by the unit rules."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.models import AdeDevice, AdeServerToken, AuditEvent, OrgUnit
from mdm.services.ade import units
from mdm.services.ade.client import DepClient, DepError
from mdm.services.ade.profiles import save_profile
from mdm.services.ade.server_token import OAuthCredentials
from mdm.services.ade.sync import client_for, sync

ADMIN = Actor("admin:test", "admin", "127.0.0.1")


def _run_sync(session_factory: Any, settings: Any, waits: list[float] | None = None) -> Any:
    with httpx.Client(timeout=10) as http, session_factory() as session:
        client = client_for(
            session, settings, http, sleep=(waits.append if waits is not None else lambda s: None)
        )
        report = sync(session, settings, client, actor=ADMIN)
        session.commit()
        return report, client


def _unit(session: Session, code: str) -> OrgUnit:
    unit = OrgUnit(kind="unit", name_ja=f"救急{code}", name_en=f"Ambulance {code}", code=code)
    session.add(unit)
    session.flush()
    return unit


def test_full_fetch_then_cursor_sync_places_devices_and_assigns_unit_profiles(
    abm: Any, ade_settings: Any, uploaded_token: int, session_factory: Any, session: Session
) -> None:
    ambulance = _unit(session, "A1")
    pump = _unit(session, "P1")
    units.add_rule(session, "serial", "DMPXK0AAAA01", ambulance, actor=ADMIN)
    units.add_rule(session, "default", "", pump, actor=ADMIN)
    units.import_order(session, "PO-2026-117", ["DMPXK0BBBB02"], actor=ADMIN)
    units.add_rule(session, "order", "PO-2026-117", ambulance, actor=ADMIN)
    save_profile(
        session,
        ambulance,
        {"department": "消防本部 情報システム係", "support_phone_number": "03-1234-5678"},
        actor=ADMIN,
    )
    session.commit()
    for serial in ("DMPXK0AAAA01", "DMPXK0BBBB02", "DMPXK0CCCC03"):
        abm.service.add_device(serial)
    abm.service.page_size = 2  # the first fetch takes two pages

    report, _ = _run_sync(session_factory, ade_settings)
    assert report.full_fetch and report.added == 3
    # The ambulance unit has a profile: its two devices got it; the pump unit has none yet.
    assert report.profiles_defined == 1 and report.assigned == 2
    session.rollback()  # a new snapshot: the sync wrote in its own session
    session.expire_all()
    rows = {d.serial_number: d for d in session.scalars(select(AdeDevice))}
    assert rows["DMPXK0AAAA01"].org_unit_id == ambulance.id
    assert rows["DMPXK0BBBB02"].org_unit_id == ambulance.id  # by its order
    assert rows["DMPXK0CCCC03"].org_unit_id == pump.id  # the default
    assert rows["DMPXK0AAAA01"].profile_status == "assigned"
    assert rows["DMPXK0CCCC03"].profile_status == "empty"
    (profile,) = abm.service.profiles.values()
    assert profile["is_supervised"] and profile["is_mandatory"] and not profile["is_mdm_removable"]
    assert profile["await_device_configured"] and profile["language"] == "ja" and profile["region"] == "JP"
    assert profile["url"] == "https://mdm.test.invalid/ade/enroll"
    assert (
        profile["department"] == "消防本部 情報システム係"
        and profile["support_phone_number"] == "03-1234-5678"
    )
    assert "AppleID" in profile["skip_setup_items"] and "Location" not in profile["skip_setup_items"]
    token = session.get(AdeServerToken, uploaded_token)
    assert token is not None and token.cursor and token.server_name == "Hikeshi HQ"

    # Later: one device added in ABM, one removed; only changes come, from the cursor.
    abm.service.add_device("DMPXK0DDDD04")
    abm.service.remove_device("DMPXK0CCCC03")
    before = len(abm.service.log)
    report, _ = _run_sync(session_factory, ade_settings)
    assert not report.full_fetch
    assert report.added == 1 and report.deleted == 1
    paths = [p for _m, p, _s in abm.service.log[before:]]
    assert "/devices/sync" in paths and "/server/devices" not in paths
    session.rollback()  # a new snapshot: the sync wrote in its own session
    session.expire_all()
    gone = session.scalars(select(AdeDevice).where(AdeDevice.serial_number == "DMPXK0CCCC03")).one()
    assert gone.removed_at is not None
    assert "ade.synced" in set(session.scalars(select(AuditEvent.action)))


def test_expired_session_is_reopened_and_throttling_waits_as_told(
    abm: Any, ade_settings: Any, uploaded_token: int, session_factory: Any
) -> None:
    abm.service.add_device("DMPXK0AAAA01")
    waits: list[float] = []
    _run_sync(session_factory, ade_settings, waits)
    sessions = abm.service.session_requests
    for serial in ("DMPXK0EEEE05", "DMPXK0FFFF06", "DMPXK0GGGG07"):
        abm.service.add_device(serial)
    # Sessions now end after two calls: one sync, page by page, meets a 401 and re-opens one.
    abm.service.session_lifetime = 2
    abm.service.page_size = 1
    abm.service.throttle_next(2, 429, "7")
    abm.service.throttle_next(1, 503, None)
    report, _client = _run_sync(session_factory, ade_settings, waits)
    assert report.added == 3
    assert abm.service.session_requests >= sessions + 2
    statuses = [s for _m, _p, s in abm.service.log]
    assert statuses.count(429) == 2 and statuses.count(503) == 1 and 401 in statuses
    # Retry-After honoured (7 s twice), then the backoff's own delay for the 503 without one.
    assert waits[:2] == [7.0, 7.0] and waits[2] > 0


def test_expired_cursor_starts_a_full_fetch(
    abm: Any, ade_settings: Any, uploaded_token: int, session_factory: Any
) -> None:
    abm.service.add_device("DMPXK0AAAA01")
    _run_sync(session_factory, ade_settings)
    abm.service.expired_cursors = True
    report, _ = _run_sync(session_factory, ade_settings)
    assert report.full_fetch and report.modified == 1


def test_a_wrong_signature_is_refused_by_the_service(abm: Any) -> None:
    wrong = OAuthCredentials("CK_3f2a9c1e", "not-the-secret", "AT_9e8f7a", "AS_1c2d3e", None)  # type: ignore[arg-type]
    with httpx.Client(timeout=10) as http:
        client = DepClient(abm.url, wrong, http, sleep=lambda s: None)
        with pytest.raises(DepError) as refused:
            client.account()
    assert refused.value.status == 401
    assert ("GET", "/session", 401) in abm.service.log


def test_retries_are_bounded(abm: Any, ade_settings: Any, uploaded_token: int, session_factory: Any) -> None:
    abm.service.throttle_next(20, 503, "0")
    with httpx.Client(timeout=10) as http, session_factory() as session:
        client = client_for(session, ade_settings, http, sleep=lambda s: None)
        with pytest.raises(DepError) as failed:
            sync(session, ade_settings, client, actor=ADMIN)
    assert failed.value.status == 503


def test_cli_rules_profile_sync_and_device_list(
    abm: Any,
    ade_settings: Any,
    uploaded_token: int,
    session: Session,
    cli_env: Any,
    monkeypatch: Any,
    tmp_path: Any,
) -> None:
    from tests.ade.conftest import run_cli

    monkeypatch.setenv("HIKESHI_ADE_URL", abm.url)
    _unit(session, "A1")
    _unit(session, "A2")
    session.commit()
    abm.service.add_device("DMPXK0AAAA01")
    abm.service.add_device("DMPXK0BBBB02")
    order = tmp_path / "order.csv"
    order.write_text("serial_number,model\nDMPXK0BBBB02,iPad\n")
    assert run_cli("ade", "rule", "serial", "dmpxk0aaaa01", "--unit", "A1").exit_code == 0
    assert run_cli("ade", "import-order", "PO-1", str(order)).exit_code == 0
    assert run_cli("ade", "rule", "order", "PO-1", "--unit", "A1").exit_code == 0
    bad = run_cli("ade", "rule", "serial", "no!", "--unit", "A1")
    assert bad.exit_code != 0 and "serial_number" in bad.output
    assert run_cli("ade", "rule", "default", "--unit", "NOPE").exit_code != 0
    assert run_cli("ade", "profile", "--unit", "A1", "--support-phone", "03-1111-2222").exit_code == 0
    synced = run_cli("ade", "sync")
    assert synced.exit_code == 0, synced.output
    assert "added=2" in synced.output and "assigned=2" in synced.output
    listing = run_cli("ade", "devices")
    assert "DMPXK0AAAA01" in listing.output and "assigned" in listing.output and "A1" in listing.output
    status = run_cli("ade", "status")
    assert "Hikeshi HQ" in status.output
    # By hand: one tablet moved to another unit; its new unit's profile goes at the next sync.
    assert run_cli("ade", "profile", "--unit", "A2").exit_code == 0
    placed = run_cli("ade", "place", "dmpxk0bbbb02", "--unit", "A2")
    assert placed.exit_code == 0, placed.output
    lines = run_cli("ade", "devices").output.splitlines()
    assert any("DMPXK0BBBB02" in line and "\tA2\t" in line for line in lines), lines
    unknown = run_cli("ade", "place", "NOSUCHSERIAL", "--unit", "A2")
    assert unknown.exit_code != 0 and "serial_number" in unknown.output


def test_scheduler_job_syncs_when_due_records_failures_and_alerts_on_expiry(
    abm: Any, ade_settings: Any, uploaded_token: int, session_factory: Any, session: Session
) -> None:
    from dataclasses import replace
    from datetime import timedelta

    from mdm.ground import clock
    from mdm.ground.models import Alert
    from mdm.roots.scheduler.jobs import JobContext, run_job

    abm.service.add_device("DMPXK0AAAA01")
    ctx = JobContext(session_factory, replace(ade_settings, push_enabled=False), "host:1")
    first = run_job(ctx, "ade_sync")
    assert first.outcome == "ok" and first.details["added"] == 1
    assert run_job(ctx, "ade_sync").details["due"] is False  # not again within 30 minutes
    with session_factory() as s:
        token = s.get(AdeServerToken, uploaded_token)
        assert token is not None
        token.last_sync_at = clock.now() - timedelta(hours=1)
        token.access_token_expiry = clock.now() + timedelta(days=6)
        s.commit()
    abm.service.throttle_next(20, 503, "0")
    failed = run_job(replace(ctx, settings=replace(ctx.settings)), "ade_sync")
    assert failed.outcome == "failed" and "503" in failed.details["error"]
    session.rollback()
    session.expire_all()
    token = session.get(AdeServerToken, uploaded_token)
    assert token is not None and token.last_error and "503" in token.last_error
    alerts = session.scalars(select(Alert).where(Alert.kind == "ade.token_expiring")).all()
    assert len(alerts) == 1 and alerts[0].severity == "critical"
