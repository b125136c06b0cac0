"""Mdm-Signature verification against signatures from cryptography, hand-built CMS and real openssl."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from flask import Flask, request

from mdm.ground.identity.signature import (
    SignatureError,
    UntrustedCertificate,
    verify_chain,
    verify_mdm_signature,
)
from mdm.ground.x509util import fingerprint
from tests.support.apple_device import SimulatedIPad
from tests.support.pki import issue_cert, make_ca, rsa_key, write_pem
from tests.support.tools import require_tool

BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
    b'<plist version="1.0">\n<dict>\n\t<key>Status</key>\n\t<string>Idle</string>\n'
    b"\t<key>UDID</key>\n\t<string>00008101-001A2B3C4D5E001E</string>\n</dict>\n</plist>\n"
)

EC_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return make_ca("Hikeshi Device CA (test signature)")


@pytest.fixture(scope="module")
def device(ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return issue_cert(*ca, "00008101-001A2B3C4D5E001E")


@pytest.fixture(scope="module")
def ec_device(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert, _ = issue_cert(*ca, "00008101-EC00000000000001", key=EC_KEY)  # type: ignore[arg-type]
    return cert, EC_KEY


def _builder_signature(
    body: bytes,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    digest: hashes.HashAlgorithm | None = None,
    *extra: pkcs7.PKCS7Options,
    rsa_padding: padding.PSS | None = None,
) -> str:
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(body)
        .add_signer(cert, key, digest or hashes.SHA256(), rsa_padding=rsa_padding)
        .sign(Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary, *extra])
    )
    return base64.b64encode(der).decode()


def _hand_built_signature(
    body: bytes,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    digest: str = "sha256",
    signature_algorithm: str | None = None,
    attributes: list[tuple[str, list[object]]] | None = None,
    with_attributes: bool = True,
    encap_content_type: str = "data",
    by_key_identifier: bool = False,
    digest_of: bytes | None = None,
    keep_attribute_order: bool = False,
) -> str:
    """A CMS SignedData assembled field by field, to reach cases no ordinary signer produces."""
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    if by_key_identifier:
        sid = cms.SignerIdentifier({"subject_key_identifier": asn1_cert.key_identifier})
    else:
        sid = cms.SignerIdentifier(
            {
                "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                    {"issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number}
                )
            }
        )
    hash_algorithm = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384()}.get(
        digest, hashes.SHA256()
    )
    message_digest = hashlib.new(digest, body if digest_of is None else digest_of).digest()
    if attributes is None:
        attributes = [("content_type", ["data"]), ("message_digest", [message_digest])]
    signer: dict[str, object] = {
        "version": "v3" if by_key_identifier else "v1",
        "sid": sid,
        "digest_algorithm": {"algorithm": digest},
    }
    if with_attributes:
        encoded = [cms.CMSAttribute({"type": t, "values": v}) for t, v in attributes]
        if keep_attribute_order:
            # Not DER (a SET OF must be sorted), as a sloppy encoder might send it; the signature
            # covers these exact bytes, so a verifier that re-encodes would fail.
            signed_attrs = cms.CMSAttributes.load(_der_set(b"".join(a.dump() for a in encoded)))
        else:
            signed_attrs = cms.CMSAttributes(encoded)
        signed = signed_attrs.dump()
        signer["signed_attrs"] = signed_attrs
    else:
        signed = body
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signed, padding.PKCS1v15(), hash_algorithm)
        signer["signature_algorithm"] = {"algorithm": signature_algorithm or "rsassa_pkcs1v15"}
    else:
        signature = key.sign(signed, ec.ECDSA(hash_algorithm))
        signer["signature_algorithm"] = {"algorithm": signature_algorithm or f"{digest}_ecdsa"}
    signer["signature"] = signature
    signed_data = cms.SignedData(
        {
            "version": "v3" if by_key_identifier else "v1",
            "digest_algorithms": [{"algorithm": digest}],
            "encap_content_info": {"content_type": encap_content_type},
            "certificates": [asn1_cert],
            "signer_infos": [cms.SignerInfo(signer)],
        }
    )
    der = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return base64.b64encode(der).decode()


def _der_set(contents: bytes) -> bytes:
    length = len(contents)
    if length < 0x80:
        return b"\x31" + bytes([length]) + contents
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return b"\x31" + bytes([0x80 | len(size)]) + size + contents


def _replace_certificates(header: str, *certs: x509.Certificate | bytes) -> str:
    """`header` with its certificates bag replaced by `certs` (certificates, or raw DER)."""
    content_info = cms.ContentInfo.load(base64.b64decode(header))
    content_info["content"]["certificates"] = [
        asn1_x509.Certificate.load(c if isinstance(c, bytes) else c.public_bytes(Encoding.DER)) for c in certs
    ]
    return base64.b64encode(content_info.dump(force=True)).decode()


def _with_version_4(cert: x509.Certificate) -> bytes:
    """`cert`'s DER claiming X.509 version 4, which asn1crypto reads and cryptography refuses."""
    der = cert.public_bytes(Encoding.DER)
    version_v3 = b"\xa0\x03\x02\x01\x02"
    assert der.count(version_v3) == 1
    return der.replace(version_v3, b"\xa0\x03\x02\x01\x03")


# -- signatures that must verify -------------------------------------------------------------------


def test_rsa_sha256_detached_with_signed_attributes_verifies(device) -> None:
    cert, key = device

    signer = verify_mdm_signature(_builder_signature(BODY, cert, key), BODY)

    assert signer == cert


@pytest.mark.parametrize("digest", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()], ids=lambda d: d.name)
def test_builder_digests_and_no_attributes_verify(device, digest: hashes.HashAlgorithm) -> None:
    cert, key = device

    with_attributes = _builder_signature(BODY, cert, key, digest)
    without_attributes = _builder_signature(BODY, cert, key, digest, pkcs7.PKCS7Options.NoAttributes)

    assert verify_mdm_signature(with_attributes, BODY) == cert
    assert verify_mdm_signature(without_attributes, BODY) == cert


def test_ecdsa_signature_verifies(ec_device) -> None:
    cert, key = ec_device

    assert verify_mdm_signature(_builder_signature(BODY, cert, key), BODY) == cert
    assert (
        verify_mdm_signature(_builder_signature(BODY, cert, key, None, pkcs7.PKCS7Options.NoAttributes), BODY)
        == cert
    )


def test_sha1_signatures_verify_as_older_ios_sends_them(device, ec_device) -> None:
    cert, key = device
    ec_cert, ec_key = ec_device

    assert verify_mdm_signature(_hand_built_signature(BODY, cert, key, digest="sha1"), BODY) == cert
    assert (
        verify_mdm_signature(
            _hand_built_signature(BODY, cert, key, digest="sha1", signature_algorithm="sha1_rsa"), BODY
        )
        == cert
    )
    assert (
        verify_mdm_signature(
            _hand_built_signature(BODY, cert, key, digest="sha1", with_attributes=False), BODY
        )
        == cert
    )
    assert verify_mdm_signature(_hand_built_signature(BODY, ec_cert, ec_key, digest="sha1"), BODY) == ec_cert


def test_signed_attributes_are_verified_as_received_not_re_encoded(device) -> None:
    cert, key = device
    digest = hashlib.sha256(BODY).digest()
    attributes = [("message_digest", [digest]), ("content_type", ["data"])]  # reverse of DER order

    header = _hand_built_signature(BODY, cert, key, attributes=attributes, keep_attribute_order=True)

    signed_attrs = cms.ContentInfo.load(base64.b64decode(header))["content"]["signer_infos"][0][
        "signed_attrs"
    ]
    assert signed_attrs[0]["type"].native == "message_digest"  # the unsorted order reached the wire
    assert verify_mdm_signature(header, BODY) == cert


def test_signer_found_by_subject_key_identifier(device) -> None:
    cert, key = device

    assert verify_mdm_signature(_hand_built_signature(BODY, cert, key, by_key_identifier=True), BODY) == cert


def test_signer_found_among_chain_certificates_in_any_order(ca, device) -> None:
    cert, key = device
    header = _builder_signature(BODY, cert, key)
    for bag in ((ca[0], cert), (cert, ca[0])):
        assert verify_mdm_signature(_replace_certificates(header, *bag), BODY) == cert


def test_an_unreadable_certificate_is_passed_over_unless_it_is_the_signers(ca, device) -> None:
    cert, key = device
    header = _builder_signature(BODY, cert, key)
    beside = _replace_certificates(header, _with_version_4(ca[0]), cert)
    assert verify_mdm_signature(beside, BODY) == cert
    with pytest.raises(SignatureError, match="well-formed"):
        verify_mdm_signature(_replace_certificates(header, _with_version_4(cert)), BODY)


def test_two_different_certificates_naming_the_signer_are_refused(ca, device) -> None:
    cert, key = device
    ca_cert, ca_key = ca
    # The same issuer and serial number on another certificate (a CA that reused a serial).
    twin = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .serial_number(cert.serial_number)
        .public_key(rsa_key("twin of test_signature").public_key())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .sign(ca_key, hashes.SHA256())
    )
    header = _builder_signature(BODY, cert, key)
    with pytest.raises(SignatureError, match="several certificates"):
        verify_mdm_signature(_replace_certificates(header, twin, cert), BODY)
    # The same certificate twice is one signer.
    assert verify_mdm_signature(_replace_certificates(header, cert, cert), BODY) == cert
    assert ca_cert.subject == cert.issuer


def test_ecdsa_named_by_public_key_oid_verifies(ec_device) -> None:
    cert, key = ec_device

    header = _hand_built_signature(BODY, cert, key, signature_algorithm="1.2.840.10045.2.1")

    assert verify_mdm_signature(header, BODY) == cert


def test_simulated_ipad_signature_verifies_and_is_wrapped_base64_tolerant(device) -> None:
    cert, key = device
    ipad = SimulatedIPad(cert, key)
    body = ipad.authenticate_body()

    header = ipad.sign(body)["Mdm-Signature"]
    wrapped = "\n ".join(header[i : i + 64] for i in range(0, len(header), 64))

    assert verify_mdm_signature(header, body) == cert
    assert verify_mdm_signature(wrapped, body) == cert


def test_attached_content_equal_to_body_verifies_and_different_content_fails(device) -> None:
    cert, key = device
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(BODY)
        .add_signer(cert, key, hashes.SHA256())
        .sign(Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    header = base64.b64encode(der).decode()

    assert verify_mdm_signature(header, BODY) == cert
    with pytest.raises(SignatureError, match="differs"):
        verify_mdm_signature(header, BODY.replace(b"Idle", b"Busy"))


# -- forgeries and garbage -------------------------------------------------------------------------


@pytest.mark.parametrize("attributes", [True, False], ids=["signed-attributes", "no-attributes"])
def test_body_changed_by_one_byte_fails(device, attributes: bool) -> None:
    cert, key = device
    options = [] if attributes else [pkcs7.PKCS7Options.NoAttributes]
    header = _builder_signature(BODY, cert, key, None, *options)
    forged = bytearray(BODY)
    forged[BODY.index(b"Idle")] ^= 0x01

    with pytest.raises(SignatureError, match="does not match the body"):
        verify_mdm_signature(header, bytes(forged))


def test_signature_by_another_key_with_victim_certificate_fails(device) -> None:
    cert, _ = device
    attacker_key = rsa_key("attacker of test_signature")

    # The signer identifier and the included certificate are the victim's; the key is not.
    forged = _hand_built_signature(BODY, cert, attacker_key)

    with pytest.raises(SignatureError, match="does not match the body"):
        verify_mdm_signature(forged, BODY)


def test_victim_certificate_swapped_into_attacker_signature_fails(ca, device) -> None:
    victim_cert, _ = device
    attacker_cert, attacker_key = issue_cert(
        *ca, "attacker device", key=rsa_key("attacker of test_signature")
    )
    header = _builder_signature(BODY, attacker_cert, attacker_key)

    with pytest.raises(SignatureError, match="signer's certificate"):
        verify_mdm_signature(_replace_certificates(header, victim_cert), BODY)


def test_a_remembered_signer_still_has_every_signature_checked(device) -> None:
    """The certificates a device sends are resolved once and remembered (issue 18); the signature
    over each body never is: the same certificates and signer identifier with other bytes, or with
    a signature by another key, fail after a verified request as before it."""
    cert, key = device
    header = _builder_signature(BODY, cert, key)
    assert verify_mdm_signature(header, BODY) == cert
    assert verify_mdm_signature(header, BODY) == cert  # remembered now
    with pytest.raises(SignatureError, match="does not match the body"):
        verify_mdm_signature(header, BODY.replace(b"Idle", b"Idlf"))
    forged = _hand_built_signature(BODY, cert, rsa_key("attacker of test_signature"))
    with pytest.raises(SignatureError, match="does not match the body"):
        verify_mdm_signature(forged, BODY)


def test_a_remembered_issuer_is_still_checked_for_dates_and_trust(ca, device) -> None:
    """Which trusted CA issued a certificate is remembered; whether both are valid now, and whether
    that CA is still among the trusted ones, is asked on every request."""
    ca_cert, _ = ca
    cert, _ = device
    now = datetime.now(UTC)
    assert verify_chain(cert, [ca_cert], now) == ca_cert
    assert verify_chain(cert, [ca_cert], now) == ca_cert  # remembered now
    with pytest.raises(UntrustedCertificate, match="expired"):
        verify_chain(cert, [ca_cert], cert.not_valid_after_utc + timedelta(seconds=1))
    with pytest.raises(UntrustedCertificate, match="not issued by a trusted CA"):
        verify_chain(cert, [make_ca("Another device CA", key=rsa_key("another"))[0]], now)


def test_self_made_certificate_with_victim_subject_verifies_but_is_untrusted(ca, device) -> None:
    ca_cert, _ = ca
    victim_cert, _ = device
    impostor_ca, impostor_ca_key = make_ca(
        ca_cert.subject.rfc4514_string().removeprefix("CN="), key=rsa_key("impostor")
    )
    impostor_cert, impostor_key = issue_cert(
        impostor_ca, impostor_ca_key, "00008101-001A2B3C4D5E001E", key=rsa_key("impostor leaf")
    )
    assert impostor_cert.subject == victim_cert.subject and impostor_cert.issuer == victim_cert.issuer

    signer = verify_mdm_signature(_builder_signature(BODY, impostor_cert, impostor_key), BODY)

    with pytest.raises(UntrustedCertificate):
        verify_chain(signer, [ca_cert], datetime.now(UTC))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        "not base64!!",
        "QUJD",
        base64.b64encode(b"\x30\x03\x02\x01\x01").decode(),
        base64.b64encode(b"\xff" * 64).decode(),
        "A" * 200_000,
    ],
    ids=["empty", "blank", "not-base64", "not-der", "wrong-der", "junk", "huge"],
)
def test_garbage_header_fails(header: str) -> None:
    with pytest.raises(SignatureError):
        verify_mdm_signature(header, BODY)


def test_truncated_cms_fails(device) -> None:
    cert, key = device
    der = base64.b64decode(_builder_signature(BODY, cert, key))

    with pytest.raises(SignatureError, match="well-formed"):
        verify_mdm_signature(base64.b64encode(der[:-40]).decode(), BODY)


def test_signature_without_certificates_fails(device) -> None:
    cert, key = device

    header = _builder_signature(BODY, cert, key, None, pkcs7.PKCS7Options.NoCerts)

    with pytest.raises(SignatureError, match="signer's certificate"):
        verify_mdm_signature(header, BODY)


def test_two_signers_fail(device, ec_device) -> None:
    cert, key = device
    ec_cert, ec_key = ec_device
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(BODY)
        .add_signer(cert, key, hashes.SHA256())
        .add_signer(ec_cert, ec_key, hashes.SHA256())
        .sign(Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )

    with pytest.raises(SignatureError, match="exactly one signer"):
        verify_mdm_signature(base64.b64encode(der).decode(), BODY)


def test_rsa_pss_is_refused(device) -> None:
    cert, key = device
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)

    with pytest.raises(SignatureError, match="unsupported signature algorithm"):
        verify_mdm_signature(_builder_signature(BODY, cert, key, rsa_padding=pss), BODY)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"attributes": [("message_digest", ["DIGEST"])]}, "content type"),
        ({"attributes": [("content_type", ["signed_data"]), ("message_digest", ["DIGEST"])]}, "content type"),
        (
            {
                "attributes": [
                    ("content_type", ["data"]),
                    ("content_type", ["data"]),
                    ("message_digest", ["DIGEST"]),
                ]
            },
            "content type",
        ),
        ({"attributes": [("content_type", ["data"])]}, "message digest"),
        (
            {"attributes": [("content_type", ["data"]), ("message_digest", ["DIGEST", b"\x00" * 32])]},
            "message digest",
        ),
        ({"digest_of": b"another body"}, "does not match the body"),
        ({"digest": "md5"}, "unsupported digest"),
        ({"digest": "sha1", "signature_algorithm": "sha256_rsa"}, "inconsistent"),
        ({"encap_content_type": "signed_data"}, "plain data"),
        ({"signature_algorithm": "sha256_ecdsa"}, "does not match the signer's key"),
    ],
    ids=[
        "no-content-type",
        "wrong-content-type",
        "two-content-types",
        "no-message-digest",
        "two-message-digests",
        "digest-of-other-body",
        "md5",
        "inconsistent-digests",
        "encapsulated-signed-data",
        "ecdsa-oid-with-rsa-key",
    ],
)
def test_hand_built_violations_fail(device, kwargs: dict, reason: str) -> None:
    cert, key = device
    if "attributes" in kwargs:
        digest = hashlib.sha256(BODY).digest()
        kwargs = {
            "attributes": [
                (t, [digest if v == "DIGEST" else v for v in vs]) for t, vs in kwargs["attributes"]
            ]
        }

    with pytest.raises(SignatureError, match=reason):
        verify_mdm_signature(_hand_built_signature(BODY, cert, key, **kwargs), BODY)


# -- real openssl ----------------------------------------------------------------------------------


def _openssl_sign(tmp_path: Path, cert: x509.Certificate, key, body: bytes, *options: str) -> str:
    openssl = require_tool("openssl")
    body_file = tmp_path / "body.plist"
    body_file.write_bytes(body)
    cert_file = write_pem(tmp_path / "signer.pem", cert)
    key_file = write_pem(tmp_path / "signer.key", key)
    out = tmp_path / "signature.der"
    subprocess.run(
        [
            openssl,
            "cms",
            "-sign",
            "-binary",
            "-outform",
            "DER",
            "-nosmimecap",
            "-in",
            str(body_file),
            "-signer",
            str(cert_file),
            "-inkey",
            str(key_file),
            "-out",
            str(out),
            *options,
        ],
        check=True,
        capture_output=True,
    )
    return base64.b64encode(out.read_bytes()).decode()


@pytest.mark.tool
@pytest.mark.parametrize(
    "options",
    [
        ["-md", "sha256"],
        ["-md", "sha1"],
        ["-md", "sha512", "-keyid"],
        ["-md", "sha256", "-noattr"],
        ["-md", "sha256", "-nodetach"],
    ],
    ids=["sha256", "sha1", "sha512-keyid", "no-attributes", "attached"],
)
def test_openssl_cms_signature_verifies(tmp_path: Path, device, options: list[str]) -> None:
    cert, key = device

    header = _openssl_sign(tmp_path, cert, key, BODY, *options)

    signer_info = cms.ContentInfo.load(base64.b64decode(header))["content"]["signer_infos"][0]
    has_attributes = signer_info["signed_attrs"].native is not None
    assert has_attributes is ("-noattr" not in options)  # openssl signs attributes unless told not to
    assert verify_mdm_signature(header, BODY) == cert
    with pytest.raises(SignatureError):
        verify_mdm_signature(header, BODY + b"\n")


@pytest.mark.tool
def test_openssl_ecdsa_signature_verifies(tmp_path: Path, ec_device) -> None:
    cert, key = ec_device

    header = _openssl_sign(tmp_path, cert, key, BODY, "-md", "sha256")

    assert verify_mdm_signature(header, BODY) == cert


@pytest.mark.tool
def test_openssl_accepts_the_simulated_ipad_signature(tmp_path: Path, ca, device) -> None:
    openssl = require_tool("openssl")
    ca_cert, _ = ca
    ipad = SimulatedIPad(*device)
    body = ipad.token_update_body()
    (tmp_path / "body").write_bytes(body)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(ipad.sign(body)["Mdm-Signature"]))
    ca_file = write_pem(tmp_path / "ca.pem", ca_cert)

    result = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(tmp_path / "sig.der"),
            "-content",
            str(tmp_path / "body"),
            "-CAfile",
            str(ca_file),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr


# -- through HTTP: the header and body arrive intact ------------------------------------------------


def _echo_app() -> Flask:
    app = Flask(__name__)

    @app.put("/mdm/checkin")
    @app.put("/mdm/connect")
    def verify() -> tuple[dict[str, str], int]:
        try:
            signer = verify_mdm_signature(request.headers.get("Mdm-Signature", ""), request.get_data())
        except SignatureError as exc:
            return {"error": str(exc)}, 401
        return {"fingerprint": fingerprint(signer), "content_type": request.content_type or ""}, 200

    return app


def _json(response) -> dict:
    # Flask's test response has .data, httpx's has .content.
    return json.loads(response.data if hasattr(response, "data") else response.content)


def test_simulated_ipad_through_flask_test_client_and_httpx(device) -> None:
    cert, key = device
    ipad = SimulatedIPad(cert, key)
    app = _echo_app()
    flask_client = app.test_client()
    httpx_client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://mdm.test")

    for client in (flask_client, httpx_client):
        checkin = ipad.checkin(client, ipad.authenticate_body())
        connect = ipad.connect(client, ipad.idle_body())
        unsigned = ipad.checkin(client, ipad.authenticate_body(), signed=False)
        forged = ipad.connect(client, ipad.idle_body(), headers=ipad.sign(ipad.checkout_body()))

        assert checkin.status_code == 200
        assert _json(checkin) == {
            "fingerprint": fingerprint(cert),
            "content_type": "application/x-apple-aspen-mdm-checkin",
        }
        assert _json(connect)["content_type"] == "application/x-apple-aspen-mdm"
        assert unsigned.status_code == 401
        assert forged.status_code == 401


# -- verify_chain and fingerprint --------------------------------------------------------------------


def test_chain_to_issuing_ca_is_returned(ca, device) -> None:
    ca_cert, _ = ca
    cert, _ = device
    other_ca, _ = make_ca("Another trusted CA")

    assert verify_chain(cert, [other_ca, ca_cert], datetime.now(UTC)) == ca_cert


def test_certificate_from_another_ca_is_untrusted(ca) -> None:
    ca_cert, _ = ca
    foreign_ca = make_ca("Foreign CA")
    foreign_cert, _ = issue_cert(*foreign_ca, "00008101-FFFFFFFFFFFFFFFF")

    with pytest.raises(UntrustedCertificate, match="not issued by a trusted CA"):
        verify_chain(foreign_cert, [ca_cert], datetime.now(UTC))
    with pytest.raises(UntrustedCertificate):
        verify_chain(foreign_cert, [], datetime.now(UTC))


def test_same_name_ca_with_another_key_is_untrusted(ca, device) -> None:
    ca_cert, _ = ca
    cert, _ = device
    look_alike, _ = make_ca(ca_cert.subject.rfc4514_string().removeprefix("CN="), key=rsa_key("look-alike"))
    assert look_alike.subject == cert.issuer

    with pytest.raises(UntrustedCertificate, match="not issued by a trusted CA"):
        verify_chain(cert, [look_alike], datetime.now(UTC))


def test_expired_and_not_yet_valid_certificates_are_untrusted(ca) -> None:
    now = datetime.now(UTC)
    expired, _ = issue_cert(*ca, "expired iPad", not_before=now - timedelta(days=400), days=365)
    future, _ = issue_cert(*ca, "future iPad", not_before=now + timedelta(days=1))

    with pytest.raises(UntrustedCertificate, match="expired or not yet valid"):
        verify_chain(expired, [ca[0]], now)
    with pytest.raises(UntrustedCertificate, match="expired or not yet valid"):
        verify_chain(future, [ca[0]], now)


def test_validity_is_judged_at_the_given_instant_inclusive(ca, device) -> None:
    cert, _ = device

    assert verify_chain(cert, [ca[0]], cert.not_valid_after_utc) == ca[0]
    assert verify_chain(cert, [ca[0]], cert.not_valid_before_utc) == ca[0]
    with pytest.raises(UntrustedCertificate):
        verify_chain(cert, [ca[0]], cert.not_valid_after_utc + timedelta(seconds=1))


def test_expired_ca_makes_its_certificates_untrusted_unless_a_renewed_ca_is_trusted() -> None:
    now = datetime.now(UTC)
    old_ca, ca_key = make_ca("Renewed CA", not_before=now - timedelta(days=30), days=10)
    cert, _ = issue_cert(old_ca, ca_key, "iPad of renewed CA", not_before=now - timedelta(days=25), days=365)
    renewed_ca, _ = make_ca("Renewed CA", not_before=now - timedelta(days=1))  # same name, same key

    with pytest.raises(UntrustedCertificate, match="issuing CA"):
        verify_chain(cert, [old_ca], now)
    assert verify_chain(cert, [old_ca, renewed_ca], now) == renewed_ca


def test_non_ca_certificate_is_never_a_trust_anchor(ca, device) -> None:
    cert, key = device
    # A leaf "issued" by the device's own key, naming the device as issuer.
    child, _ = issue_cert(cert, key, "child of a leaf")

    with pytest.raises(UntrustedCertificate):
        verify_chain(child, [cert], datetime.now(UTC))


def test_naive_instant_is_a_programming_error(ca, device) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_chain(device[0], [ca[0]], datetime(2026, 1, 1))


def test_fingerprint_is_lowercase_sha256_of_der(device) -> None:
    cert, _ = device

    value = fingerprint(cert)

    assert value == hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    assert len(value) == 64 and value == value.lower()


def test_untrusted_certificate_is_a_signature_error() -> None:
    assert issubclass(UntrustedCertificate, SignatureError)
    assert SignatureError.http_status == 401


def test_every_single_byte_corruption_is_refused_by_signature_or_chain(ca, device) -> None:
    cert, key = device
    der = base64.b64decode(_builder_signature(BODY, cert, key))
    now = datetime.now(UTC)
    accepted = 0

    # Whatever byte an attacker flips, the answer is SignatureError, never a crash. A flip inside
    # the included certificate (which the CMS signature does not cover) can still verify, but then
    # the certificate's own CA signature is broken: this is why callers always run verify_chain.
    for position in range(len(der)):
        corrupted = bytearray(der)
        corrupted[position] ^= 0xA5
        try:
            signer = verify_mdm_signature(base64.b64encode(corrupted).decode(), BODY)
        except SignatureError:
            continue
        if signer != cert:
            with pytest.raises(UntrustedCertificate):
                verify_chain(signer, [ca[0]], now)
        accepted += 1

    assert accepted < len(der) // 2


def test_remembered_signers_are_bounded_least_recently_used_first(device, ec_device) -> None:
    from mdm.ground.identity.signature import _RememberedSigners

    remembered = _RememberedSigners(2)
    remembered.remember((b"a", b"1"), device[0])
    remembered.remember((b"b", b"1"), ec_device[0])
    assert remembered.get((b"a", b"1")) == device[0]  # used: "b" is now the least recent
    remembered.remember((b"c", b"1"), device[0])
    assert remembered.get((b"b", b"1")) is None
    assert remembered.get((b"a", b"1")) == device[0] and remembered.get((b"c", b"1")) == device[0]
