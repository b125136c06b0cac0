"""Mdm-Signature checked over a body read in chunks (answers too large to hold), with and without
signed attributes, RSA and EC: the same verdicts as over the whole body."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from mdm.ground.identity.signature import SignatureError, verify_mdm_signature, verify_mdm_signature_streamed
from tests.support.pki import issue_cert, make_ca

BODY = os.urandom(3 * 1024 * 1024 + 17)


def _chunks(body: bytes, size: int = 1024 * 1024):
    for offset in range(0, len(body), size):
        yield body[offset : offset + size]


def _header(cert, key, body: bytes, *, attributes: bool) -> str:
    options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    if not attributes:
        options.append(pkcs7.PKCS7Options.NoAttributes)
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(body)
        .add_signer(cert, key, hashes.SHA256())
        .sign(Encoding.DER, options)
    )
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def identities():
    ca, ca_key = make_ca("Streamed Test CA")
    rsa_cert, rsa_key = issue_cert(ca, ca_key, "rsa-device")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_cert, _ = issue_cert(ca, ca_key, "ec-device", key=ec_key)
    return [(rsa_cert, rsa_key), (ec_cert, ec_key)]


@pytest.mark.parametrize("attributes", [True, False])
@pytest.mark.parametrize("which", [0, 1])
def test_streamed_verification_agrees_with_the_whole_body(identities, attributes, which):
    cert, key = identities[which]
    header = _header(cert, key, BODY, attributes=attributes)
    assert verify_mdm_signature(header, BODY) == cert
    assert verify_mdm_signature_streamed(header, _chunks(BODY)) == cert
    tampered = BODY[:-1] + bytes([BODY[-1] ^ 1])
    with pytest.raises(SignatureError, match="does not match the body"):
        verify_mdm_signature_streamed(header, _chunks(tampered))
    with pytest.raises(SignatureError):
        verify_mdm_signature_streamed(header, _chunks(BODY + b"x"))


def test_an_attached_signature_is_refused_for_a_streamed_body(identities):
    cert, key = identities[0]
    small = b"<plist/>"
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(small)
        .add_signer(cert, key, hashes.SHA256())
        .sign(Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    with pytest.raises(SignatureError, match="detached"):
        verify_mdm_signature_streamed(base64.b64encode(der).decode(), [small])
