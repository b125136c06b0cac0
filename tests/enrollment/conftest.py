"""Fixtures for enrollment tests: an app with the built-in CA, an org tree, a push topic, tokens,
and a real HTTP server on loopback for external clients (scepclient)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from enrollment import tokens
from mdm.ground import ca as ca_service
from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.models import OrgUnit
from mdm.services import orgunits

ADMIN = Actor("admin@hq.example.jp", "admin", "192.0.2.10")
TOPIC = "com.apple.mgmt.External.4f0c9a5e-hikeshi-test"


@functools.cache
def _cached_key(label: str, bits: int) -> rsa.RSAPrivateKey:
    # Generated once per test run: the CA code path is the same, only the key is reused.
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture
def enroll_settings(settings: Settings) -> Settings:
    # No APNs in these tests: commands wait for check-ins.
    return replace(settings, push_enabled=False)


@pytest.fixture
def provisioned_ca(
    enroll_settings: Settings, session_factory: sessionmaker[Session]
) -> ca_service.Credential:
    """The built-in CA, created through ensure_ca with keys generated once per run."""
    from mdm.ground.db import transaction

    with transaction(session_factory) as s:
        ca_service.ensure_ca(
            s,
            enroll_settings,
            ca_key=_cached_key("ca", ca_service.CA_KEY_BITS),
            signer_key=_cached_key("signer", ca_service.SIGNER_KEY_BITS),
        )
    with session_factory() as s:
        return ca_service.device_ca(s, enroll_settings)


@pytest.fixture
def enroll_app(enroll_settings: Settings, provisioned_ca: ca_service.Credential) -> Iterator[Any]:
    from mdm import create_app

    application = create_app(enroll_settings)
    # As the `app` fixture (tests/conftest.py): the outbox drained in the request's thread.
    application.extensions["hikeshi.wiring"].drainer.background = False
    yield application
    # A drain still running (a test that turned it to the background) ends before the next
    # test empties the tables.
    application.extensions["hikeshi.wiring"].drainer.wait_idle(30)
    application.extensions["hikeshi"].dispatcher.close()
    application.extensions["hikeshi"].engine.dispose()


@pytest.fixture
def enroll_client(enroll_app: Any) -> Any:
    return enroll_app.test_client()


@dataclass
class LiveServer:
    url: str
    port: int


@pytest.fixture
def live_server(enroll_app: Any) -> Iterator[LiveServer]:
    """The app served over real HTTP on 127.0.0.1 (an ephemeral port), one thread per request."""
    server = make_server("127.0.0.1", 0, enroll_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="hikeshi-test-http", daemon=True)
    thread.start()
    yield LiveServer(f"http://127.0.0.1:{server.server_port}", server.server_port)
    server.shutdown()
    thread.join(10)


@pytest.fixture
def push_topic(session: Session, enroll_settings: Settings) -> str:
    """An imported APNs push certificate whose topic enrollment profiles carry."""
    from mdm.ground.push.certificates import LoadedPushCertificate, import_push_certificate
    from tests.support.pki import issue_cert, key_pem, make_ca

    apple_ca, apple_key = make_ca("Test Apple Push CA")
    cert, key = issue_cert(apple_ca, apple_key, f"APSP:{TOPIC}", uid=TOPIC)
    import_push_certificate(
        session,
        LoadedPushCertificate(cert=cert, key_pem=key_pem(key), topic=TOPIC),
        secret_key=enroll_settings.secret_key,
        actor=ADMIN,
    )
    session.commit()
    return TOPIC


@dataclass
class Tree:
    hq: OrgUnit
    station: OrgUnit
    branch: OrgUnit
    ambulance: OrgUnit
    pump: OrgUnit


@pytest.fixture
def tree(session: Session) -> Tree:
    """東京消防本部 (HQ) → 中央消防署 (ST01) → 北出張所 (BR01), with 救急隊 and ポンプ隊."""
    hq = orgunits.create_unit(
        session,
        {"kind": "hq", "name_ja": "東京消防本部", "name_en": "Tokyo Fire HQ", "code": "HQ"},
        actor=ADMIN,
    )
    station = orgunits.create_unit(
        session,
        {
            "kind": "station",
            "name_ja": "中央消防署",
            "name_en": "Chuo Fire Station",
            "code": "ST01",
            "parent_id": hq.id,
        },
        actor=ADMIN,
    )
    branch = orgunits.create_unit(
        session,
        {
            "kind": "branch",
            "name_ja": "北出張所",
            "name_en": "North Branch",
            "code": "BR01",
            "parent_id": station.id,
        },
        actor=ADMIN,
    )
    ambulance = orgunits.create_unit(
        session,
        {
            "kind": "unit",
            "name_ja": "中央救急隊",
            "name_en": "Chuo Ambulance 1",
            "code": "A01",
            "unit_type": "ambulance",
            "parent_id": station.id,
        },
        actor=ADMIN,
    )
    pump = orgunits.create_unit(
        session,
        {"kind": "unit", "name_ja": "北ポンプ隊", "code": "P01", "unit_type": "pump", "parent_id": branch.id},
        actor=ADMIN,
    )
    session.commit()
    return Tree(hq, station, branch, ambulance, pump)


@pytest.fixture
def make_token(session: Session) -> Any:
    def make(
        unit: OrgUnit, *, uses: int = 1, days: float = 7, platform: str = "apple"
    ) -> tokens.CreatedToken:
        created = tokens.create_token(
            session,
            {
                "org_unit_id": unit.id,
                "max_uses": uses,
                "platform": platform,
                "expires_in": timedelta(days=days),
            },
            actor=ADMIN,
        )
        session.commit()
        return created

    return make
