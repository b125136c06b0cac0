"""The APNs transport against a real HTTP/2 TLS server on loopback (tests/support/apns_server.py)."""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import ssl
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from mdm.ground import clock
from mdm.ground.push.apns import ApnsClient, PushCredentials, PushCredentialsError, PushOutcome
from mdm.ground.push.backoff import backoff_delay, parse_retry_after
from tests.support import pki
from tests.support.apns_server import ApnsTestServer, start_apns_server

# The shared fixture, registered here too until tests/conftest.py lists the module in pytest_plugins.

FAST = {"backoff_base": 0.01, "backoff_cap": 0.05}


def token() -> str:
    return secrets.token_hex(32)


@pytest.fixture
def credentials(apns_server: ApnsTestServer) -> PushCredentials:
    return apns_server.issue_client_credentials()


@pytest.fixture
def fixed_clock() -> Iterator[datetime]:
    instant = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    clock.set_clock(lambda: instant)
    yield instant
    clock.set_clock(None)


def push(server: ApnsTestServer, creds: PushCredentials, device: str, magic: str, **options) -> PushOutcome:
    async def run() -> PushOutcome:
        async with ApnsClient(server.url, creds, ca_file=server.ca_file, **options) as client:
            return await client.push(device, magic)

    return asyncio.run(run())


def test_push_is_delivered_with_apns_headers_and_exact_body(
    apns_server: ApnsTestServer, credentials: PushCredentials, fixed_clock: datetime
) -> None:
    device = token()
    outcome = push(apns_server, credentials, device, "1D4E5A0B-PUSH-MAGIC")

    assert outcome.delivered and outcome.status == 200
    assert outcome.reason is None and outcome.attempts == 1 and outcome.token == device
    assert not (outcome.stale_token or outcome.bad_token or outcome.certificate_rejected)
    [record] = apns_server.pushes
    assert outcome.apns_id == record.apns_id and record.apns_id
    assert (record.method, record.path, record.token) == ("POST", f"/3/device/{device}", device)
    assert record.topic == credentials.topic
    assert record.push_type == "mdm"
    assert record.priority == "10"
    assert record.expiration == str(int((fixed_clock + timedelta(days=7)).timestamp()))
    assert record.body == b'{"mdm":"1D4E5A0B-PUSH-MAGIC"}'
    assert record.payload == {"mdm": "1D4E5A0B-PUSH-MAGIC"}
    assert record.client_uid == credentials.topic
    assert "APSP:" in record.client_subject
    assert apns_server.errors == []


def test_expiration_follows_the_setting(
    apns_server: ApnsTestServer, credentials: PushCredentials, fixed_clock: datetime
) -> None:
    push(apns_server, credentials, token(), "m", expiration_seconds=3600)
    push(apns_server, credentials, token(), "m", expiration_seconds=0)
    hour, once = apns_server.pushes
    assert hour.expiration == str(int(fixed_clock.timestamp()) + 3600)
    assert once.expiration == "0"  # APNs: deliver once, store nothing


def test_server_refuses_a_client_without_certificate(apns_server: ApnsTestServer) -> None:
    async def bare_client() -> None:
        trust = ssl.create_default_context(cafile=apns_server.ca_file)
        async with httpx.AsyncClient(http1=False, http2=True, verify=trust) as client:
            await client.post(f"{apns_server.url}/3/device/{token()}", content=b'{"mdm":"x"}')

    with pytest.raises(httpx.TransportError):
        asyncio.run(bare_client())
    [failure] = apns_server.wait_for_handshake_failures(1)
    assert "CERTIFICATE" in failure.upper()  # OpenSSL: peer did not return a certificate
    assert apns_server.pushes == [] and apns_server.connection_count == 0


def test_push_certificate_from_an_untrusted_ca_gets_no_answer(apns_server: ApnsTestServer, tmp_path) -> None:
    rogue_ca, rogue_key = pki.make_ca("Rogue Push CA", key=pki.rsa_key("rogue-ca"))
    topic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"
    cert, key = pki.issue_cert(
        rogue_ca, rogue_key, "APSP:rogue", uid=topic, extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    rogue = PushCredentials(topic=topic, cert_pem=pki.pem(cert), key_pem=pki.key_pem(key))

    outcome = push(apns_server, rogue, token(), "m", max_attempts=2, **FAST)

    assert outcome.status is None and not outcome.delivered
    assert outcome.reason and ": " in outcome.reason  # the error and its cause, for the operator
    assert outcome.attempts == 2  # no answer is worth a retry
    failures = apns_server.wait_for_handshake_failures(2)
    assert all("CERTIFICATE_VERIFY_FAILED" in failure for failure in failures)
    assert apns_server.pushes == [] and apns_server.connection_count == 0


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (410, "Unregistered"),
        (400, "BadDeviceToken"),
        (400, "DeviceTokenNotForTopic"),
        (403, "BadCertificate"),
        (403, "InvalidProviderToken"),
        (404, "BadPath"),
    ],
)
def test_final_answers_are_never_retried(
    apns_server: ApnsTestServer, credentials: PushCredentials, status: int, reason: str
) -> None:
    device = token()
    apns_server.respond(device, status, reason)

    outcome = push(apns_server, credentials, device, "m", **FAST)

    assert (outcome.status, outcome.reason, outcome.attempts) == (status, reason, 1)
    assert not outcome.delivered
    assert outcome.apns_id == apns_server.pushes[0].apns_id
    assert len(apns_server.pushes_to(device)) == 1


def test_outcome_classification(apns_server: ApnsTestServer, credentials: PushCredentials) -> None:
    stale, bad, foreign, refused = token(), token(), token(), token()
    apns_server.respond(stale, 410)
    apns_server.respond(bad, 400, "BadDeviceToken")
    apns_server.respond(foreign, 400, "DeviceTokenNotForTopic")
    apns_server.respond(refused, 403, "BadCertificate")

    async def run() -> list[PushOutcome]:
        async with ApnsClient(apns_server.url, credentials, ca_file=apns_server.ca_file, **FAST) as client:
            return await client.push_many([(t, "m") for t in (stale, bad, foreign, refused)])

    stale_o, bad_o, foreign_o, refused_o = asyncio.run(run())
    assert stale_o.stale_token and stale_o.reason == "Unregistered"
    assert not (stale_o.bad_token or stale_o.certificate_rejected)
    assert bad_o.bad_token and not bad_o.stale_token
    assert not foreign_o.bad_token and foreign_o.status == 400
    assert refused_o.certificate_rejected and not refused_o.bad_token


def test_outage_is_retried_until_delivered(apns_server: ApnsTestServer, credentials: PushCredentials) -> None:
    apns_server.set_outage(503, count=2)
    device = token()

    outcome = push(apns_server, credentials, device, "m", **FAST)

    assert outcome.delivered and outcome.attempts == 3
    assert [p.status for p in apns_server.pushes_to(device)] == [503, 503, 200]
    assert [p.reason for p in apns_server.pushes_to(device)] == ["ServiceUnavailable"] * 2 + [None]


def test_too_many_requests_waits_for_retry_after(
    apns_server: ApnsTestServer, credentials: PushCredentials
) -> None:
    apns_server.set_outage(429, count=1, retry_after=1)

    outcome = push(apns_server, credentials, token(), "m", backoff_base=0.01, backoff_cap=5)

    assert outcome.delivered and outcome.attempts == 2
    first, second = apns_server.pushes
    assert (first.status, first.reason) == (429, "TooManyRequests")
    assert second.received_monotonic - first.received_monotonic >= 0.95


def test_retry_after_beyond_the_cap_ends_the_retries(
    apns_server: ApnsTestServer, credentials: PushCredentials
) -> None:
    apns_server.set_outage(503, count=1, retry_after=120)

    outcome = push(apns_server, credentials, token(), "m", backoff_base=0.01, backoff_cap=1)

    assert (outcome.status, outcome.attempts) == (503, 1)


def test_push_many_shares_one_connection(apns_server: ApnsTestServer, credentials: PushCredentials) -> None:
    targets = [(token(), f"magic-{i}") for i in range(200)]
    apns_server.set_delay(0.02)  # hold each answer a little, so overlap is observable

    async def run() -> list[PushOutcome]:
        async with ApnsClient(
            apns_server.url, credentials, ca_file=apns_server.ca_file, max_concurrency=50
        ) as client:
            return await client.push_many(targets)

    outcomes = asyncio.run(run())

    assert [o.token for o in outcomes] == [t for t, _ in targets]
    assert all(o.delivered and o.attempts == 1 for o in outcomes)
    records = apns_server.pushes
    assert len(records) == 200
    assert {r.token: r.payload["mdm"] for r in records} == dict(targets)
    assert apns_server.tcp_connection_count == 1 and apns_server.connection_count == 1
    assert {r.connection_id for r in records} == {1}
    assert 1 < apns_server.peak_streams_in_flight <= 50  # concurrent, and bounded by max_concurrency
    assert apns_server.errors == []


def test_client_keeps_its_connection_across_calls_and_reconnects_when_dropped(
    apns_server: ApnsTestServer, credentials: PushCredentials
) -> None:
    async def run() -> list[PushOutcome]:
        async with ApnsClient(apns_server.url, credentials, ca_file=apns_server.ca_file, **FAST) as client:
            first = await client.push(token(), "m")
            batch = await client.push_many([(token(), "m") for _ in range(5)])
            assert apns_server.connection_count == 1
            # APNs closes connections now and then (GOAWAY); the next push must find a new one.
            await asyncio.to_thread(apns_server.close_connections)
            last = await client.push(token(), "m")
            return [first, *batch, last]

    outcomes = asyncio.run(run())

    assert all(o.delivered for o in outcomes)
    assert apns_server.connection_count == 2
    assert len(apns_server.pushes) == 7


def test_server_down_gives_no_answer_after_max_attempts_quickly(
    credentials: PushCredentials, tmp_path
) -> None:
    down = start_apns_server(tmp_path / "down")
    down.stop()
    started = time.monotonic()

    outcome = push(down, credentials, token(), "m", max_attempts=3, timeout=2, **FAST)

    assert outcome.status is None and outcome.attempts == 3
    assert outcome.reason and "ConnectError" in outcome.reason
    assert time.monotonic() - started < 3


def test_malformed_token_is_refused_before_anything_is_sent(
    apns_server: ApnsTestServer, credentials: PushCredentials
) -> None:
    async def run() -> None:
        async with ApnsClient(apns_server.url, credentials, ca_file=apns_server.ca_file) as client:
            await client.push_many([(token(), "m"), ("../../admin", "m")])

    with pytest.raises(ValueError, match="device token"):
        asyncio.run(run())
    assert apns_server.pushes == []


def test_credentials_are_checked_and_the_key_never_stays_on_disk(
    apns_server: ApnsTestServer, credentials: PushCredentials
) -> None:
    roots = {tempfile.gettempdir(), "/dev/shm"}
    leftovers = lambda: [p for r in roots for p in glob.glob(os.path.join(r, "hikeshi-apns-*"))]  # noqa: E731
    before = leftovers()

    client = ApnsClient(apns_server.url, credentials, ca_file=apns_server.ca_file)
    asyncio.run(client.aclose())

    assert leftovers() == before
    assert "PRIVATE" not in repr(credentials)
    key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(PushCredentialsError, match="encrypted"):
        ApnsClient(apns_server.url, PushCredentials(credentials.topic, credentials.cert_pem, encrypted))
    other_key = pki.key_pem(pki.rsa_key("another push key"))
    with pytest.raises(PushCredentialsError, match="does not match"):
        ApnsClient(apns_server.url, PushCredentials(credentials.topic, credentials.cert_pem, other_key))


def test_backoff_is_exponential_capped_and_jittered(fixed_clock: datetime) -> None:
    ceilings = [backoff_delay(n, base=0.5, cap=30, rand=lambda: 1.0) for n in range(1, 9)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30, 30]
    assert backoff_delay(3, base=0.5, cap=30, rand=lambda: 0.25) == 0.5
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Mon, 23 Nov 2026 03:00:30 GMT") == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
