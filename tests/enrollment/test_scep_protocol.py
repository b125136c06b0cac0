"""SCEP messages in detail (RFC 8894), with the test client in tests/support/scep_client.py."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment import tokens
from mdm.ground import ca as ca_service
from mdm.ground.config import Settings
from mdm.ground.models import DeviceCertificate, EnrollmentToken
from mdm.ground.x509util import fingerprint
from tests.enrollment.conftest import ADMIN
from tests.support import scep_client as sc
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import ScepClient


@pytest.fixture
def challenge(session: Session, tree: Any, make_token: Any, enroll_settings: Settings) -> Any:
    def issue(uses: int = 5) -> tuple[str, tokens.CreatedToken]:
        created = make_token(tree.ambulance, uses=uses)
        secret = tokens.issue_enrollment_challenge(session, enroll_settings, created.token, actor=ADMIN)
        session.commit()
        return secret, created

    return issue


def test_get_ca_caps_and_cert(enroll_client: Any, provisioned_ca: ca_service.Credential) -> None:
    scep = ScepClient(enroll_client)
    caps = scep.get_ca_caps()
    assert {"POSTPKIOperation", "SHA-256", "AES", "DES3", "SCEPStandard", "Renewal"} <= set(caps)
    response = enroll_client.get("/scep?operation=GetCACert")
    assert response.headers["Content-Type"] == "application/x-x509-ca-cert"
    assert response.data == provisioned_ca.certificate.public_bytes(Encoding.DER)
    assert enroll_client.get("/scep?operation=Nonsense").status_code == 400
    assert enroll_client.get("/scep").status_code == 400


@pytest.mark.parametrize("digest", ["sha256", "sha1"])
def test_success_certrep_fields(enroll_client: Any, challenge: Any, provisioned_ca: Any, digest: str) -> None:
    secret, _ = challenge()
    enrollment = ScepClient(enroll_client).enroll(secret, cipher="aes256_cbc", digest=digest)
    reply = enrollment.reply
    assert (reply.status, reply.fail_info, reply.message_type) == ("0", None, "3")
    assert reply.transaction_id == enrollment.transaction_id
    assert reply.recipient_nonce == enrollment.sender_nonce
    assert len(reply.sender_nonce) == 16 and reply.sender_nonce != enrollment.sender_nonce
    assert reply.reply_cipher == "aes256_cbc"  # answered with the client's own algorithm
    cert = reply.certificate
    assert cert is not None
    cert.verify_directly_issued_by(provisioned_ca.certificate)
    assert cert.public_key().public_numbers() == enrollment.key.public_key().public_numbers()
    assert cert.subject.rfc4514_string() == "CN=Hikeshi device test"


def test_des3_request_gets_des3_reply(enroll_client: Any, challenge: Any) -> None:
    secret, _ = challenge()
    reply = ScepClient(enroll_client).enroll(secret, cipher="tripledes_3key").reply
    assert reply.status == "0" and reply.reply_cipher == "tripledes_3key"


def test_wrong_challenge_gets_failure_with_message_digest(
    enroll_client: Any, challenge: Any, session: Session
) -> None:
    _, created = challenge()
    enrollment = ScepClient(enroll_client).enroll("wrong-challenge")
    reply = enrollment.reply
    assert (reply.status, reply.fail_info, reply.message_type) == ("2", "2", "3")
    assert reply.envelope is None and reply.certificate is None
    # Clients reject a CertRep without these (parse_certrep also checked the CA signature).
    assert {sc.OID_MESSAGE_DIGEST, sc.OID_CONTENT_TYPE, sc.OID_RECIPIENT_NONCE, sc.OID_TRANSACTION_ID} <= (
        reply.attribute_oids
    )
    assert reply.recipient_nonce == enrollment.sender_nonce
    assert reply.transaction_id == enrollment.transaction_id
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    assert session.get(EnrollmentToken, created.token.id).use_count == 0  # type: ignore[union-attr]
    assert session.scalars(select(DeviceCertificate)).all() == []


def test_missing_challenge_reused_challenge_revoked_token(
    enroll_client: Any, challenge: Any, session: Session
) -> None:
    scep = ScepClient(enroll_client)
    assert scep.enroll(None).reply.fail_info == "2"
    secret, _ = challenge()
    assert scep.enroll(secret).reply.status == "0"
    assert scep.enroll(secret).reply.fail_info == "2"
    other, other_token = challenge()
    tokens.revoke_token(session, session.get(EnrollmentToken, other_token.token.id), actor=ADMIN)  # type: ignore[arg-type]
    session.commit()
    assert scep.enroll(other).reply.fail_info == "2"


def test_tampered_signature_is_bad_message_check(
    enroll_client: Any, challenge: Any, session: Session
) -> None:
    secret, _ = challenge()
    reply = ScepClient(enroll_client).enroll(secret, tamper=True).reply
    assert (reply.status, reply.fail_info) == ("2", "1")
    # The challenge was not consumed by the forged request.
    assert ScepClient(enroll_client).enroll(secret).reply.status == "0"


def test_pkcsreq_signed_with_another_key_is_refused(enroll_client: Any, challenge: Any) -> None:
    secret, _ = challenge()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = (sc.self_signed(other, "someone else"), other)
    reply = ScepClient(enroll_client).enroll(secret, signer=signer).reply
    assert (reply.status, reply.fail_info) == ("2", "2")


def test_weak_key_and_unsupported_message_type(enroll_client: Any, challenge: Any) -> None:
    secret, _ = challenge()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert ScepClient(enroll_client).enroll(secret, key=weak).reply.fail_info == "2"
    poll = ScepClient(enroll_client).enroll(secret, message_type=sc.CERT_POLL).reply
    assert (poll.status, poll.fail_info) == ("2", "2")
    # Neither consumed the challenge.
    assert ScepClient(enroll_client).enroll(secret).reply.status == "0"


def test_garbage_is_http_400_not_500(enroll_client: Any) -> None:
    for body in (b"", b"not asn.1", b"\x30\x03\x02\x01\x01", b"\x30\x80" + b"\x00" * 10):
        response = enroll_client.post(
            "/scep?operation=PKIOperation", data=body, headers={"Content-Type": "application/x-pki-message"}
        )
        assert response.status_code == 400, body
    assert enroll_client.get("/scep?operation=PKIOperation&message=%%%").status_code == 400
    assert enroll_client.get("/scep?operation=PKIOperation").status_code == 400
    huge = base64.b64encode(b"\x30" * 300_000).decode()
    assert enroll_client.get(f"/scep?operation=PKIOperation&message={huge}").status_code == 400


def test_envelope_not_for_us_is_bad_message_check(enroll_client: Any, challenge: Any) -> None:
    from tests.support.pki import make_ca

    secret, _ = challenge()
    stranger, _ = make_ca("Some other CA")
    # Encrypted to a stranger; the reply is still checked against our CA.
    scep = ScepClient(enroll_client)
    ours = scep.get_ca_cert()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = sc.make_csr(key, "x", secret)
    message = sc.pki_message(
        message_type=sc.PKCS_REQ,
        content=sc.envelope_for(csr.public_bytes(Encoding.DER), stranger, "aes128_cbc"),
        signer_cert=sc.self_signed(key, "x"),
        signer_key=key,
        transaction_id="tx-1",
        sender_nonce=b"0123456789abcdef",
    )
    response = scep.send(message)
    reply = sc.parse_certrep(response.data, ours)
    assert (reply.status, reply.fail_info) == ("2", "1")


def test_renewal_request_signed_by_bound_identity(
    enroll_client: Any, challenge: Any, session: Session, push_topic: str
) -> None:
    secret, created = challenge()
    scep = ScepClient(enroll_client)
    first = scep.enroll(secret)
    cert = first.reply.certificate
    assert cert is not None
    # Not bound to a device yet: RenewalReq refused.
    refused = scep.enroll(None, message_type=sc.RENEWAL_REQ, signer=(cert, first.key)).reply
    assert (refused.status, refused.fail_info) == ("2", "2")

    ipad = SimulatedIPad(cert, first.key, topic=push_topic)
    assert ipad.checkin(enroll_client, ipad.authenticate_body()).status_code == 200
    renewal = scep.enroll(None, message_type=sc.RENEWAL_REQ, signer=(cert, first.key))
    assert renewal.reply.status == "0"
    new_cert = renewal.reply.certificate
    assert (
        new_cert is not None
        and new_cert.public_key().public_numbers() == renewal.key.public_key().public_numbers()
    )
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    rows = {r.fingerprint_sha256: r for r in session.scalars(select(DeviceCertificate)).all()}
    assert rows[fingerprint(new_cert)].device_id == rows[fingerprint(cert)].device_id is not None
    # The renewed identity works without a new Authenticate; the token was not used again.
    renewed = SimulatedIPad(new_cert, renewal.key, udid=ipad.udid, topic=push_topic)
    assert renewed.connect(enroll_client, renewed.idle_body()).status_code == 200
    assert session.get(EnrollmentToken, created.token.id).use_count == 1  # type: ignore[union-attr]

    # A RenewalReq signed by a certificate from another CA is refused.
    from tests.support.pki import issue_cert, make_ca

    other_ca, other_key = make_ca("Not our CA")
    foreign, foreign_key = issue_cert(other_ca, other_key, "foreign")
    refused = scep.enroll(None, message_type=sc.RENEWAL_REQ, signer=(foreign, foreign_key)).reply
    assert refused.fail_info == "2"


def test_a_signer_certificate_claiming_x509_version_4_is_http_400_not_500(enroll_client: Any) -> None:
    """cryptography refuses such a certificate with InvalidVersion, which is not a ValueError."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = sc.self_signed(key, "version 4")
    der = cert.public_bytes(Encoding.DER)
    version_4 = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03", 1)
    message = sc.pki_message(
        message_type="19",
        content=b"\x30\x00",
        signer_cert=cert,
        signer_key=key,
        transaction_id="v4",
        sender_nonce=b"\x00" * 16,
    ).replace(der, version_4)
    response = enroll_client.post(
        "/scep?operation=PKIOperation", data=message, headers={"Content-Type": "application/x-pki-message"}
    )
    assert response.status_code == 400, response.data[:200]


def test_a_request_claiming_pkcs10_version_5_is_a_bad_request_failure(
    enroll_client: Any, challenge: Any
) -> None:
    secret, _ = challenge()
    client = ScepClient(enroll_client)
    ca_cert = client.get_ca_cert()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = sc.make_csr(key, "version 5", secret).public_bytes(Encoding.DER)
    version_0 = b"\x02\x01\x00"
    version_5 = der.replace(version_0, b"\x02\x01\x05", 1)
    assert der.index(version_0) < 10 and version_5 != der
    message = sc.pki_message(
        message_type="19",
        content=sc.envelope_for(version_5, ca_cert, "aes128_cbc"),
        signer_cert=sc.self_signed(key, "SCEP SIGNER"),
        signer_key=key,
        transaction_id="v5",
        sender_nonce=b"\x01" * 16,
    )
    response = client.send(message)
    assert response.status_code == 200, response.data[:200]
    reply = sc.parse_certrep(response.data, ca_cert)
    assert (reply.status, reply.fail_info) == ("2", "2")  # FAILURE, badRequest
