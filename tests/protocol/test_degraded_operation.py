"""Degraded operation: APNs down (breaker, retries, readiness) and the database unreachable."""

from __future__ import annotations

import plistlib
import time
from dataclasses import replace

import pytest
from sqlalchemy import create_engine, select

from commands.queue import enqueue_command
from mdm import create_app
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import Command, Device, PushAttempt
from mdm.ground.push.breaker import CircuitBreaker
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from tests.support.apple_device import SimulatedIPad

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


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


def test_healthz_and_readyz_without_push_certificate(client):
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    # The node can still serve devices: degraded, not out of the load balancer.
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    assert client.get("/readyz?strict=1").status_code == 503
    assert body["checks"]["push_certificate"] == {"ok": False, "detail": "no APNs push certificate installed"}


def test_apns_outage_loses_nothing_and_recovers_by_itself(pushing_app, device_ca, apns_server, session):
    client = pushing_app.test_client()
    assert client.get("/readyz").status_code == 200
    dispatcher = pushing_app.extensions["hikeshi"].dispatcher
    dispatcher.breaker = CircuitBreaker(threshold=1, base_cooldown=0.5, max_cooldown=1.0)
    ipads = []
    for n in range(3):
        cert, key = device_ca.issue_identity(f"ipad-{n}")
        ipad = SimulatedIPad(cert, key, topic=pushing_app.topic)
        ipad.checkin(client, ipad.authenticate_body())
        ipad.checkin(client, ipad.token_update_body())
        ipads.append(ipad)

    apns_server.set_outage(503)
    with transaction(pushing_app.extensions["hikeshi"].session_factory) as s:
        uuids = [enqueue_command(s, d, "DeviceLock", {}, actor=ADMIN).uuid for d in s.scalars(select(Device))]
    assert dispatcher.wait_idle(30)
    outage = client.get("/readyz")
    assert outage.status_code == 200 and outage.get_json()["status"] == "degraded"
    assert client.get("/readyz?strict=1").status_code == 503
    apns = outage.get_json()["checks"]["apns"]
    assert apns["ok"] is False and apns["state"] == "down" and apns["since"]

    # A device that checks in during the outage still gets its command.
    first = plistlib.loads(ipads[0].connect(client, ipads[0].idle_body()).data)
    assert first["CommandUUID"] in uuids

    apns_server.set_outage(None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and client.get("/readyz?strict=1").status_code != 200:
        time.sleep(0.2)
    assert client.get("/readyz").get_json()["status"] == "ready"
    delivered = {p.token for p in apns_server.pushes if p.status == 200}
    assert {i.token_hex for i in ipads} <= delivered
    session.rollback()
    assert session.scalar(select(Command).where(Command.status == "cancelled")) is None
    # (Enrollment also queued each device's first inventory: only the locks are counted.)
    assert len(session.scalars(select(Command).where(Command.request_type == "DeviceLock")).all()) == 3
    assert any(a.status_code == 503 for a in session.scalars(select(PushAttempt)))


def test_database_unreachable_gives_503_with_retry_after(app, ipad):
    ext = app.extensions["hikeshi"]
    broken = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1}
    )
    ext.session_factory.configure(bind=broken)
    ext.engine = broken
    client = app.test_client()
    body = ipad.authenticate_body()
    response = ipad.checkin(client, body)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["database"]["ok"] is False
