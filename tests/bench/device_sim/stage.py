"""The stage every device benchmark stands on: a private PostgreSQL cluster, the migrated
benchmark database, Settings shared by the benchmark and `hikeshi serve`, the built-in CA, an
imported push certificate (its topic goes into enrollment profiles), a unit and a token."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from commands.queue import cancel_command
from enrollment import tokens
from mdm.ground.audit import Actor
from mdm.ground.ca import ensure_ca
from mdm.ground.config import Settings
from mdm.ground.db import make_engine, make_session_factory, transaction, upgrade_database
from mdm.ground.models import Command, CommandStatus
from mdm.ground.push.certificates import LoadedPushCertificate, import_push_certificate
from mdm.services import orgunits
from tests.bench.device_sim.postgres import PrivateCluster, private_cluster
from tests.support.pki import issue_cert, key_pem, make_ca

ADMIN = Actor("bench-admin@hq", "admin", "127.0.0.1")
TOKEN_USES = 9_000
TOPIC = "com.apple.mgmt.External.8d2f6c3a-hikeshi-bench"


@dataclass
class Stage:
    cluster: PrivateCluster
    settings: Settings
    engine: Engine  # the benchmark's own connections: role postgres, never counted
    factory: sessionmaker[Session]
    tokens: list[tokens.CreatedToken]  # one per 9,000 devices: a token allows at most 10,000 uses
    topic: str

    @property
    def token_secret(self) -> str:
        return self.tokens[0].secret


@contextmanager
def stage(tmp: Path, devices: int) -> Iterator[Stage]:
    with private_cluster() as cluster:
        upgrade_database(cluster.server_url)
        instance = tmp / "instance"
        instance.mkdir(exist_ok=True)
        settings = Settings(
            instance_path=instance,
            database_url=cluster.server_url,
            secret_key="bench-secret-" + secrets.token_hex(8),
            public_url="https://mdm.bench.invalid",
            # No APNs: devices are driven by the simulator, commands wait for their check-ins.
            push_enabled=False,
        )
        engine = make_engine(cluster.admin_url)
        factory = make_session_factory(engine)
        try:
            with transaction(factory) as session:
                ensure_ca(session, settings, actor=ADMIN)
                apple_ca, apple_key = make_ca("Bench Apple Push CA")
                cert, key = issue_cert(apple_ca, apple_key, f"APSP:{TOPIC}", uid=TOPIC)
                import_push_certificate(
                    session,
                    LoadedPushCertificate(cert=cert, key_pem=key_pem(key), topic=TOPIC),
                    secret_key=settings.secret_key,
                    actor=ADMIN,
                )
                unit = orgunits.create_unit(
                    session,
                    {"kind": "hq", "name_ja": "ベンチ消防本部", "name_en": "Bench Fire HQ", "code": "BENCH"},
                    actor=ADMIN,
                )
                made = [
                    tokens.create_token(
                        session,
                        {
                            "org_unit_id": unit.id,
                            "max_uses": TOKEN_USES,
                            "platform": "apple",
                            "expires_in": timedelta(days=1),
                        },
                        actor=ADMIN,
                    )
                    for _ in range(devices // TOKEN_USES + 1)
                ]
            yield Stage(cluster, settings, engine, factory, made, TOPIC)
        finally:
            engine.dispose()


def cancel_pending(factory: sessionmaker[Session]) -> int:
    """Cancel what enrollment queued (the first inventory): the workloads start from empty queues."""
    with transaction(factory) as session:
        pending = list(session.scalars(select(Command).where(Command.status.in_(CommandStatus.PENDING))))
        for command in pending:
            cancel_command(session, command, actor=ADMIN)
    return len(pending)
