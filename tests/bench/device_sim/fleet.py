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

Key generation (the slow part: tens of ms per 2048-bit key) runs in spawned processes.
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
from mdm.audit import Actor
from mdm.config import Settings
from mdm.db import transaction
from mdm.models import EnrollmentToken
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


def _keys_and_csrs(challenges: list[str]) -> list[tuple[bytes, bytes]]:
    """In a spawned process: a new 2048-bit key and a CSR with the challenge, per challenge."""
    out = []
    for challenge in challenges:
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        csr = make_csr(key, "iPad", challenge)
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        out.append((der, csr.public_bytes(serialization.Encoding.DER)))
    return out


def _chunks(items: list[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


def _in_processes(function: Callable[..., T], processes: int, *arguments: list[Any]) -> list[T]:
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
    made = [
        pair
        for part in _in_processes(_keys_and_csrs, processes, _chunks(challenges, processes))
        for pair in part
    ]
    records = []
    for start in range(0, len(made), 250):
        with transaction(factory) as session:
            for key_der, csr_der in made[start : start + 250]:
                csr = x509.load_der_x509_csr(csr_der)
                challenge = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
                text = challenge.decode() if isinstance(challenge, bytes) else challenge
                issued = issue_with_challenge(session, settings, csr, text, actor=ENROLLING)
                key = serialization.load_der_private_key(key_der, None, unsafe_skip_rsa_key_validation=True)
                assert isinstance(key, rsa.RSAPrivateKey)
                records.append(_record(issued.certificate, key, topic))
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
    parts = _chunks(records, processes)
    failures = [
        f for part in _in_processes(_first_checkins, processes, [base_url] * len(parts), parts) for f in part
    ]
    assert not failures, failures[:5]
    return time.perf_counter() - started
