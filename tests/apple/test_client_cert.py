"""Client certificates forwarded by TLS-terminating proxies, in each encoding proxies use."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mdm.ground.identity.client_cert import BadClientCertificate, parse_proxy_certificate
from mdm.ground.identity.signature import SignatureError
from tests.support.apple_device import SimulatedIPad
from tests.support.pki import issue_cert, make_ca, pem


@pytest.fixture(scope="module")
def certificate() -> x509.Certificate:
    cert, _ = issue_cert(*make_ca("Hikeshi Device CA (test client cert)"), "00008101-001A2B3C4D5E001E")
    return cert


def test_url_encoded_pem_as_nginx_escapes_it(certificate: x509.Certificate) -> None:
    # nginx $ssl_client_escaped_cert: every newline %0A, "+" "/" "=" escaped as well.
    value = quote(pem(certificate).decode(), safe="")
    assert "%0A" in value and "\n" not in value

    assert parse_proxy_certificate(value) == certificate


def test_url_encoded_pem_keeping_base64_characters(certificate: x509.Certificate) -> None:
    # AWS ALB style: base64 characters left as they are, only newlines and spaces escaped.
    value = quote(pem(certificate).decode(), safe="+/=")

    assert parse_proxy_certificate(value) == certificate


def test_pem_with_spaces_instead_of_newlines(certificate: x509.Certificate) -> None:
    value = pem(certificate).decode().strip().replace("\n", " ")
    assert "\n" not in value

    assert parse_proxy_certificate(value) == certificate


def test_pem_with_tabs_or_newlines_kept(certificate: x509.Certificate) -> None:
    text = pem(certificate).decode()

    assert parse_proxy_certificate(text) == certificate
    assert parse_proxy_certificate(text.replace("\n", "\t")) == certificate


def test_base64_der(certificate: x509.Certificate) -> None:
    value = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()

    assert parse_proxy_certificate(value) == certificate
    assert parse_proxy_certificate(quote(value, safe="")) == certificate  # Traefik escapes it too


def test_simulated_ipad_proxy_header_parses(certificate: x509.Certificate) -> None:
    ipad = SimulatedIPad(certificate, None)  # type: ignore[arg-type]  # the key is not needed here

    headers = ipad.proxy_certificate_headers("X-Client-Cert")

    assert parse_proxy_certificate(headers["X-Client-Cert"]) == certificate


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "-",
        "(null)",
        "not a certificate",
        base64.b64encode(b"not DER at all").decode(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\nMIIB",
        "%ZZ%0A",
        "%FF%FE",
        "A" * 100_000,
    ],
    ids=[
        "empty",
        "blank",
        "dash",
        "null",
        "words",
        "base64-not-der",
        "pem-not-der",
        "pem-not-base64",
        "pem-empty",
        "pem-unterminated",
        "bad-escape",
        "escaped-non-utf8",
        "huge",
    ],
)
def test_garbage_is_refused(value: str) -> None:
    with pytest.raises(BadClientCertificate):
        parse_proxy_certificate(value)


def test_private_key_pem_is_refused(certificate: x509.Certificate) -> None:
    value = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----"

    with pytest.raises(BadClientCertificate):
        parse_proxy_certificate(value)


def test_chain_of_two_certificates_is_refused_as_ambiguous(certificate: x509.Certificate) -> None:
    ca, _ = make_ca("Hikeshi Device CA (test client cert)")
    chain = (pem(certificate) + pem(ca)).decode()

    with pytest.raises(BadClientCertificate, match="exactly one"):
        parse_proxy_certificate(chain)
    with pytest.raises(BadClientCertificate, match="exactly one"):
        parse_proxy_certificate(quote(chain, safe=""))


def test_bad_client_certificate_is_an_authentication_failure() -> None:
    assert issubclass(BadClientCertificate, SignatureError)
    assert BadClientCertificate.http_status == 401


def test_a_certificate_claiming_x509_version_4_is_refused_not_a_crash(certificate: x509.Certificate) -> None:
    der = certificate.public_bytes(Encoding.DER).replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03", 1)
    with pytest.raises(BadClientCertificate):
        parse_proxy_certificate(base64.b64encode(der).decode())
