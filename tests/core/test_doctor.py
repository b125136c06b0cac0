"""`hikeshi doctor`'s findings on the real database (SQLite, and PostgreSQL when configured):
each says only what it saw, in Japanese and English."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.health import mark_health
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from mdm.services import doctor
from mdm.services.backup.schedule import HEALTH_NAME
from tests.support import pki


def _push_certificate(session: Session, settings, days: int) -> None:
    ca, ca_key = pki.make_ca("Apple push (doctor test)")
    cert, key = pki.issue_cert(ca, ca_key, "APSP:doctor", uid="com.apple.mgmt.External.doctor", days=days)
    loaded = read_push_certificate(pki.pem(cert) + pki.key_pem(key))
    import_push_certificate(session, loaded, secret_key=settings.secret_key, actor=SYSTEM)
    session.commit()


def test_push_certificate_missing_expiring_and_good(session: Session, settings) -> None:
    missing = doctor.check_push_certificate(session)
    assert missing.state == "fail" and "push-cert request" in missing.en and "未登録" in missing.ja
    _push_certificate(session, settings, days=10)
    expiring = doctor.check_push_certificate(session)
    assert expiring.state == "warn" and "same Apple ID" in expiring.en and "同じ Apple ID" in expiring.ja
    _push_certificate(session, settings, days=300)
    assert doctor.check_push_certificate(session).state == "ok"


def test_backups_administrator_and_abm(session: Session, settings) -> None:
    off = doctor.check_backups(session, settings)
    assert off.state == "fail" and "HIKESHI_BACKUP_DIR" in off.en
    scheduled = replace(settings, backup_directory=settings.instance_path / "b", backup_interval_minutes=60)
    mark_health(session, HEALTH_NAME, False, "disk full")
    session.commit()
    failing = doctor.check_backups(session, scheduled)
    assert failing.state == "fail" and "disk full" in failing.en
    mark_health(session, HEALTH_NAME, True, "hikeshi-1.hkbackup")
    session.commit()
    assert doctor.check_backups(session, scheduled).state == "ok"
    assert doctor.check_administrator(session).state == "fail"
    abm = doctor.check_abm_token(session)
    assert abm.state == "not configured" and abm.ja == "未設定です（自動デバイス登録はまだ使えません）。"


def test_clock_and_database_against_the_server_they_run_on(clean_database: Engine, settings) -> None:
    probe = doctor.HttpsProbe()
    finding = doctor.check_clock(clean_database, probe)
    database = doctor.check_database(clean_database)
    if clean_database.dialect.name == "postgresql":
        assert finding.state == "ok" and "database" in finding.en
        assert database.state == "ok"
        # This machine's clock a minute ahead of the database server's.
        late = doctor.check_clock(clean_database, probe, now=lambda: clock.now() + timedelta(minutes=1))
        assert late.state == "fail" and "-6" in late.en
    else:
        assert finding.state == "unknown"  # SQLite has no clock of its own, and no public URL answered
        assert database.state == "warn" and "PostgreSQL" in database.en
    probe.server_date, probe.seen_at = clock.now() - timedelta(seconds=45), clock.now()
    assert doctor.check_clock(clean_database, probe).state == "fail"


def test_public_url_and_https_without_a_server(settings) -> None:
    loopback = replace(settings, public_url="http://127.0.0.1:8000")
    assert doctor.check_public_url_setting(loopback).state == "fail"
    assert doctor.check_public_url_setting(settings).state == "ok"
    unreachable = doctor.check_https(
        replace(settings, public_url="https://127.0.0.1:9"), doctor.HttpsProbe(), timeout=2
    )
    assert unreachable.state == "fail" and "cannot reach" in unreachable.en


def test_an_unreachable_database_fails_and_leaves_what_it_holds_unknown(settings) -> None:
    from mdm.ground.db import make_engine, make_session_factory

    unreachable = replace(settings, database_url="postgresql+psycopg://hikeshi@127.0.0.1:1/hikeshi")
    engine = make_engine(unreachable.database_url)
    try:
        findings = doctor.examine(unreachable, engine, make_session_factory(engine), timeout=1)
    finally:
        engine.dispose()
    states = {f.key: f.state for f in findings}
    assert states["database"] == "fail" and doctor.failed(findings)
    assert states["push_certificate"] == states["backups"] == states["administrator"] == "unknown"
