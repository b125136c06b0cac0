"""Degraded-operation banners on every console page, through a real APNs outage (the HTTP/2 test
server answering 503) and real push certificates near or past their expiry."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from commands.queue import enqueue_command
from mdm import create_app
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.health import service_health
from mdm.ground.models import Device, PushCertificate
from mdm.ground.push.breaker import CircuitBreaker
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from tests.support.apple_device import SimulatedIPad
from tests.web.helpers import login, make_user

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
PAGES = ("/console/dashboard", "/console/devices", "/console/account")
OUTAGE_JA = (
    "APNsに接続できません（{since} から）— コマンドはキューに保存され、次回チェックイン時に配信されます"
)


@pytest.fixture
def pushing_app(settings, device_ca, apns_server):
    creds = apns_server.issue_client_credentials()
    conf = replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
    )
    application = create_app(conf)
    with transaction(application.extensions["hikeshi"].session_factory) as s:
        import_push_certificate(
            s, read_push_certificate(creds.cert_pem + creds.key_pem), secret_key=conf.secret_key, actor=ADMIN
        )
    application.topic = creds.topic
    yield application
    application.extensions["hikeshi"].dispatcher.close()
    application.extensions["hikeshi"].engine.dispose()


def _signed_in(app, session_factory, settings, role="operator"):
    with session_factory() as session:
        account = make_user(session, settings, f"{role}-banner", role)
    client = app.test_client()
    login(client, account)
    return client


def test_apns_outage_banner_on_every_page_until_it_recovers(
    pushing_app, device_ca, apns_server, session, session_factory, settings
):
    client = _signed_in(pushing_app, session_factory, settings)
    dispatcher = pushing_app.extensions["hikeshi"].dispatcher
    dispatcher.breaker = CircuitBreaker(threshold=1, base_cooldown=0.5, max_cooldown=1.0)
    cert, key = device_ca.issue_identity("ipad-banner")
    ipad = SimulatedIPad(cert, key, topic=pushing_app.topic)
    device_client = pushing_app.test_client()
    ipad.checkin(device_client, ipad.authenticate_body())
    ipad.checkin(device_client, ipad.token_update_body())
    assert dispatcher.wait_idle(30)
    for page in PAGES:
        assert 'id="banner-apns-outage"' not in client.get(page).get_data(as_text=True)

    apns_server.set_outage(503)
    with transaction(pushing_app.extensions["hikeshi"].session_factory) as s:
        lock = enqueue_command(s, s.scalars(select(Device)).one(), "DeviceLock", {}, actor=ADMIN).uuid
    assert dispatcher.wait_idle(30)
    session.rollback()
    health = service_health(session, "apns")
    assert health is not None and health.healthy is False
    since = health.since.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M")
    for page in PAGES:
        html = client.get(page).get_data(as_text=True)
        assert 'id="banner-apns-outage"' in html, page
        assert OUTAGE_JA.format(since=since) in html, page
    client.set_cookie("hikeshi_lang", "en")
    english = client.get("/console/devices").get_data(as_text=True)
    assert f"Cannot reach APNs (since {since}) — commands are kept in the queue" in english
    # What the banner promises: the device still gets the lock at its next check-in.
    assert lock in ipad.connect(device_client, ipad.idle_body()).get_data(as_text=True)

    apns_server.set_outage(None)
    deadline = time.monotonic() + 30
    probe = pushing_app.test_client()
    while time.monotonic() < deadline and probe.get("/readyz?strict=1").status_code != 200:
        time.sleep(0.2)
    assert 'id="banner-apns-outage"' not in client.get("/console/dashboard").get_data(as_text=True)


def test_no_banner_before_sign_in(pushing_app, session):
    from mdm.ground.health import mark_health

    mark_health(session, "apns", False, "503 ServiceUnavailable")
    session.commit()
    assert "banner-" not in pushing_app.test_client().get("/console/login").get_data(as_text=True)


def _certificate(session, days: float) -> None:
    session.add(
        PushCertificate(
            topic="com.apple.mgmt.External.banner",
            subject="CN=APSP:banner",
            fingerprint_sha256="ef" * 32,
            not_before=clock.now() - timedelta(days=300),
            not_after=clock.now() + timedelta(days=days),
            cert_pem="-",
            key_encrypted=b"-",
            imported_by="admin",
        )
    )
    session.commit()


@pytest.mark.parametrize(
    ("days", "banner", "text"),
    [
        (30, None, None),
        (3.5, "push-cert-expiring", "APNsプッシュ証明書は {date} に期限切れになります（残り3日）"),
        (-1, "push-cert-expired", "APNsプッシュ証明書は {date} に期限切れになりました"),
    ],
)
def test_push_certificate_expiry_banner(app, session, session_factory, settings, days, banner, text):
    _certificate(session, days)
    not_after = session.scalars(select(PushCertificate)).one().not_after
    client = _signed_in(app, session_factory, settings)
    html = client.get("/console/devices").get_data(as_text=True)
    if banner is None:
        assert 'id="banner-push-cert' not in html
        return
    date = not_after.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M")
    assert f'id="banner-{banner}"' in html
    assert text.format(date=date) in html
    assert "hikeshi push-cert import" in html


def test_failing_backups_banner_for_administrators_only(app, session, session_factory, settings):
    from mdm.ground.health import mark_health

    mark_health(session, "backup", False, "refusing to back up: the key file is inside the backup directory")
    session.commit()
    since = service_health(session, "backup").since.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M")
    admin = _signed_in(app, session_factory, settings, role="admin")
    html = admin.get("/console/devices").get_data(as_text=True)
    assert 'id="banner-backup-failing"' in html
    assert (
        f"定期バックアップが失敗しています（{since} から）" in html
        and "古いバックアップは保持されています" in html
    )
    operator = _signed_in(app, session_factory, settings, role="operator")
    assert "banner-backup-failing" not in operator.get("/console/devices").get_data(as_text=True)
