"""Enrolling the simulated fleet: identities with 2048-bit RSA keys, then Authenticate and
TokenUpdate over HTTP against the running server.

Two ways to an identity, both ending in the same rows (a DeviceCertificate carrying the token, a
token use, an `enrollment.identity_issued` audit event):

- over the real door: GET /enroll/<secret> (the signed profile and its single-use challenge), then
  a SCEP PKIOperation (PKCSReq, AES-128 envelope) with tests.support.scep_client.ScepClient;
- through the issuance service that door calls once it has opened the request: a challenge from
  `enrollment.tokens.issue_enrollment_challenge` (what serving the profile does), a CSR carrying
  it, and `enrollment.issuance.issue_with_challenge`. This spares the server the SCEP envelope
  work for thousands of devices; the benchmark prints how many came which way.

Key generation and issuance run in spawned processes, each with its own database connection: both
are slow (tens of ms per 2048-bit key; and every issuance unseals and loads the CA's 3072-bit key,
which OpenSSL validates, 0.1-0.8 s on this machine depending on its load).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AttributeOID
from sqlalchemy.orm import Session, sessionmaker

from enrollment.issuance import issue_with_challenge
from enrollment.tokens import issue_enrollment_challenge
from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.db import make_engine, make_session_factory, transaction
from mdm.ground.models import EnrollmentToken
from tests.enrollment.helpers import challenge_of, profile_dict
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import ScepClient, make_csr

ENROLLING = Actor("bench-enrollment", "system", "127.0.0.1")
KEY_BITS = 2048
PER_TOKEN = 8_000
T = TypeVar("T")


@dataclass(frozen=True)
class DeviceRecord:
    """What a simulator process needs to be one enrolled iPad (picklable)."""

    cert_der: bytes
    key_der: bytes
    udid: str
    serial: str
    topic: str

    def ipad(self) -> SimulatedIPad:
        key = serialization.load_der_private_key(self.key_der, None, unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, rsa.RSAPrivateKey)
        return SimulatedIPad(
            x509.load_der_x509_certificate(self.cert_der),
            key,
            udid=self.udid,
            serial=self.serial,
            topic=self.topic,
        )

    def simulated(self) -> SimulatedIPad:
        return self.ipad()


def _record(cert: x509.Certificate, key: rsa.RSAPrivateKey, topic: str) -> DeviceRecord:
    template = SimulatedIPad(cert, key, topic=topic)  # a fresh UDID and serial, as a new iPad has
    return DeviceRecord(
        cert.public_bytes(serialization.Encoding.DER),
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        template.udid,
        template.serial,
        topic,
    )


def _issue_identities(
    database_url: str, settings: Settings, challenges: list[str], topic: str
) -> list[DeviceRecord]:
    """In a spawned process: per challenge, a new 2048-bit key, a CSR carrying the challenge, and
    the identity from `issue_with_challenge` (the SCEP door's call), committed in batches."""
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    records = []
    try:
        for start in range(0, len(challenges), 50):
            with transaction(factory) as session:
                for challenge in challenges[start : start + 50]:
                    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
                    csr = x509.load_der_x509_csr(
                        make_csr(key, "iPad", challenge).public_bytes(serialization.Encoding.DER)
                    )
                    carried = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
                    text = carried.decode() if isinstance(carried, bytes) else carried
                    issued = issue_with_challenge(session, settings, csr, text, actor=ENROLLING)
                    records.append(_record(issued.certificate, key, topic))
    finally:
        engine.dispose()
    return records


def chunks(items: list[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


def in_processes(function: Callable[..., T], processes: int, *arguments: list[Any]) -> list[T]:
    """map() over spawned processes; in this process when `processes` is 1 (the small in-suite
    check, where starting interpreters would cost more than the work)."""
    if processes <= 1:
        return list(map(function, *arguments))
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        return list(pool.map(function, *arguments))


def enroll_over_scep(base_url: str, secret: str, topic: str, count: int) -> tuple[list[DeviceRecord], float]:
    """`count` iPads through the real door: profile download, then SCEP, one after the other."""
    records = []
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=60) as http:
        scep = ScepClient(http)
        ca_cert = scep.get_ca_cert()
        for _ in range(count):
            response = http.get(f"/enroll/{secret}")
            assert response.status_code == 200, response.text[:300]
            enrollment = scep.enroll(challenge_of(profile_dict(response.content)), ca_cert=ca_cert)
            assert enrollment.reply.status == "0", enrollment.reply.fail_info
            records.append(_record(enrollment.reply.certificate, enrollment.key, topic))
    return records, time.perf_counter() - started


def enroll_through_issuance(
    factory: sessionmaker[Session],
    database_url: str,
    settings: Settings,
    token_ids: list[int],
    topic: str,
    count: int,
    processes: int,
) -> tuple[list[DeviceRecord], float]:
    """`count` identities through the issuance service the SCEP door calls (see the module doc).
    Devices are spread over `token_ids`, PER_TOKEN each (a token's uses are limited)."""
    started = time.perf_counter()
    challenges = []
    with transaction(factory) as session:
        for n in range(count):
            token = session.get(EnrollmentToken, token_ids[n // PER_TOKEN])
            assert token is not None
            challenges.append(issue_enrollment_challenge(session, settings, token, actor=ENROLLING))
    parts = chunks(challenges, processes)
    records = [
        record
        for part in in_processes(
            _issue_identities,
            processes,
            [database_url] * len(parts),
            [settings] * len(parts),
            parts,
            [topic] * len(parts),
        )
        for record in part
    ]
    return records, time.perf_counter() - started


def _first_checkins(base_url: str, records: list[DeviceRecord]) -> list[str]:
    """In a spawned process: Authenticate then TokenUpdate for each device; returns the failures."""
    failures = []
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for record in records:
            ipad = record.ipad()
            for body in (ipad.authenticate_body(), ipad.token_update_body()):
                response = ipad.checkin(http, body)
                if response.status_code != 200:
                    failures.append(f"{record.udid}: HTTP {response.status_code} {response.text[:200]}")
                    break
    return failures


def first_checkins(base_url: str, records: list[DeviceRecord], processes: int) -> float:
    started = time.perf_counter()
    parts = chunks(records, processes)
    failures = [
        f for part in in_processes(_first_checkins, processes, [base_url] * len(parts), parts) for f in part
    ]
    assert not failures, failures[:5]
    return time.perf_counter() - started


def enroll_whole(
    base_url: str, secret: str, topic: str, count: int
) -> tuple[list[DeviceRecord], list[float]]:
    """In a spawned process: `count` iPads, each the whole way a new iPad goes (profile download,
    SCEP with a new 2048-bit key, Authenticate, TokenUpdate); returns them and seconds per device."""
    records, seconds = [], []
    with httpx.Client(base_url=base_url, timeout=120) as http:
        scep = ScepClient(http)
        ca_cert = scep.get_ca_cert()
        for _ in range(count):
            started = time.perf_counter()
            response = http.get(f"/enroll/{secret}")
            assert response.status_code == 200, response.text[:300]
            enrollment = scep.enroll(challenge_of(profile_dict(response.content)), ca_cert=ca_cert)
            assert enrollment.reply.status == "0", enrollment.reply.fail_info
            record = _record(enrollment.reply.certificate, enrollment.key, topic)
            ipad = record.ipad()
            for body in (ipad.authenticate_body(), ipad.token_update_body()):
                answer = ipad.checkin(http, body)
                assert answer.status_code == 200, answer.text[:300]
            seconds.append(time.perf_counter() - started)
            records.append(record)
    return records, seconds
