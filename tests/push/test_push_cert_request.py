"""`hikeshi push-cert request` → Apple's portal → `push-cert import` of Apple's certificate alone.

A test "Apple root" and "WWDR" intermediate stand in for Apple's; real `openssl` checks what the
portal would: the CSR's own signature, the vendor's SHA256-with-RSA signature over the DER CSR,
and the chain up to the root. A community signing service is played by `openssl smime -encrypt`
answering in hex, as such services do.
"""

from __future__ import annotations

import base64
import plistlib
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from mdm.ground.models import AuditEvent, PushCertificate
from mdm.ground.push.certificates import decrypt_key
from mdm.roots.cli import main
from mdm.services.push_cert_request import REQUEST_FOLDER, key_id_of
from tests.support import pki
from tests.support.tools import require_tool

TOPIC = "com.apple.mgmt.External.2f6c1f0e-3c3a-4c56-9d7e-1b2a3c4d5e6f"


@pytest.fixture
def cli_env(settings, monkeypatch):
    for key, value in {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUSH_ENABLED": "0",
    }.items():
        monkeypatch.setenv(key, value)
    return settings


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def vendor(tmp_path_factory):
    """An MDM vendor certificate under a stand-in WWDR intermediate and Apple root."""
    folder = tmp_path_factory.mktemp("vendor")
    root, root_key = pki.make_ca("Apple Root CA (test)")
    # issue_cert makes end entities; the intermediate needs CA:TRUE.
    wwdr, wwdr_key = _intermediate(root, root_key)
    cert, key = pki.issue_cert(wwdr, wwdr_key, "MDM Vendor: Hikeshi (test)")
    return {
        "chain": pki.write_pem(folder / "vendor-chain.pem", cert, wwdr, root),
        "key": pki.write_pem(folder / "vendor-key.pem", key),
        "leaf_only": pki.write_pem(folder / "vendor-leaf.pem", cert),
        "root": pki.write_pem(folder / "root.pem", root),
        "other_key": pki.write_pem(folder / "other-key.pem", pki.rsa_key("not the vendor")),
    }


def _intermediate(root, root_key):
    from datetime import timedelta

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from mdm.ground import clock

    key = pki.rsa_key("wwdr")
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "WWDR (test)")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    return cert, key


def _openssl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([require_tool("openssl"), *args], input=input, capture_output=True, check=False)


def _apple_issues(csr_pem: bytes, tmp_path: Path, topic: str = TOPIC) -> Path:
    """Apple's portal: a push certificate for the CSR's key, and nothing else in the file."""
    csr = x509.load_pem_x509_csr(csr_pem)
    ca, ca_key = pki.make_ca("Apple Application Integration 2 (test)")
    cert, _ = pki.issue_cert(ca, ca_key, f"APSP:{topic[-8:]}", key=_PublicOnly(csr.public_key()), uid=topic)
    path = tmp_path / f"MDM_Certificate_{topic[-4:]}.pem"
    path.write_bytes(pki.pem(cert))
    return path


class _PublicOnly:
    """issue_cert needs `key.public_key()` only: Apple never sees the private key."""

    def __init__(self, public_key):
        self._public_key = public_key

    def public_key(self):
        return self._public_key


@pytest.mark.tool
def test_vendor_signed_request_passes_openssl_and_apple_certificate_imports_alone(
    cli_env, vendor, tmp_path, session
):
    out = tmp_path / "out"
    result = _run(
        "push-cert", "request", "--out", str(out), "--vendor-cert", str(vendor["chain"]),
        "--vendor-key", str(vendor["key"]),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "同じ Apple ID" in result.output and "same Apple ID, never create a new certificate" in result.output
    )

    # What Apple's portal takes: base64 of a plist with the three keys.
    request = plistlib.loads(base64.b64decode((out / "push-request.b64").read_bytes()))
    assert set(request) == {"PushCertRequestCSR", "PushCertCertificateChain", "PushCertSignature"}
    csr_der = base64.b64decode(request["PushCertRequestCSR"])
    (tmp_path / "csr.der").write_bytes(csr_der)
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(request["PushCertSignature"]))
    chain = x509.load_pem_x509_certificates(request["PushCertCertificateChain"].encode())
    assert [c.subject.rfc4514_string() for c in chain][1:] == ["CN=WWDR (test)", "CN=Apple Root CA (test)"]
    (tmp_path / "vendor-pub.pem").write_bytes(
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "intermediate.pem").write_bytes(pki.pem(chain[1]))
    (tmp_path / "vendor.pem").write_bytes(pki.pem(chain[0]))

    csr_check = _openssl("req", "-inform", "DER", "-in", str(tmp_path / "csr.der"), "-verify", "-noout")
    assert csr_check.returncode == 0 and b"verify OK" in csr_check.stdout + csr_check.stderr
    signature = _openssl(
        "dgst", "-sha256", "-verify", str(tmp_path / "vendor-pub.pem"),
        "-signature", str(tmp_path / "sig.bin"), str(tmp_path / "csr.der"),
    )  # fmt: skip
    assert signature.returncode == 0 and b"Verified OK" in signature.stdout
    chained = _openssl(
        "verify", "-CAfile", str(vendor["root"]), "-untrusted", str(tmp_path / "intermediate.pem"),
        str(tmp_path / "vendor.pem"),
    )  # fmt: skip
    assert chained.returncode == 0, chained.stderr
    # The CSR written beside it is the same one; no private key leaves the instance.
    assert (
        x509.load_pem_x509_csr((out / "push-request.csr").read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        == csr_der
    )
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in out.iterdir())
    (sealed,) = (cli_env.instance_path / REQUEST_FOLDER).glob("*.key.sealed")
    assert b"PRIVATE KEY" not in sealed.read_bytes()
    audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "push_certificate.requested")).one()
    assert audit.details["renews"] is None

    # Apple answers with the certificate only; import finds the stored key by its public key.
    apple = _apple_issues((out / "push-request.csr").read_bytes(), tmp_path)
    imported = _run("push-cert", "import", str(apple))
    assert imported.exit_code == 0, imported.output
    assert f"topic {TOPIC}" in imported.output
    session.rollback()  # a fresh snapshot: the CLI committed in its own session
    row = session.scalars(select(PushCertificate).where(PushCertificate.active.is_(True))).one()
    stored = serialization.load_pem_private_key(decrypt_key(row, cli_env.secret_key), None)
    csr = x509.load_der_x509_csr(csr_der)
    assert key_id_of(stored.public_key()) == key_id_of(csr.public_key())
    assert list((cli_env.instance_path / REQUEST_FOLDER).glob("*.key.sealed")) == []


def test_renewal_keeps_the_topic_and_a_new_topic_is_refused(cli_env, vendor, tmp_path, session):
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    for out in (first, second, third):
        args = ("--vendor-cert", str(vendor["chain"]), "--vendor-key", str(vendor["key"]))
        assert _run("push-cert", "request", "--out", str(out), *args).exit_code == 0
    assert (
        _run(
            "push-cert", "import", str(_apple_issues((first / "push-request.csr").read_bytes(), first))
        ).exit_code
        == 0
    )

    # Renewal: same Apple ID, same topic, the second request's key.
    renewed = _run(
        "push-cert", "import", str(_apple_issues((second / "push-request.csr").read_bytes(), second))
    )
    assert renewed.exit_code == 0, renewed.output
    # A certificate created anew has another topic: the existing guard refuses it.
    other = "com.apple.mgmt.External.99999999-0000-0000-0000-000000000000"
    refused = _run(
        "push-cert", "import", str(_apple_issues((third / "push-request.csr").read_bytes(), third, other))
    )
    assert refused.exit_code == 1 and "refused" in refused.output and "--force" in refused.output
    session.rollback()  # a fresh snapshot: the CLI committed in its own session
    assert [r.topic for r in session.scalars(select(PushCertificate).order_by(PushCertificate.id))] == [
        TOPIC,
        TOPIC,
    ]
    # The refused request's key is kept: the right certificate can still come.
    assert len(list((cli_env.instance_path / REQUEST_FOLDER).glob("*.key.sealed"))) == 1
    # The next request's text speaks of renewing that topic.
    again = _run("push-cert", "request", "--out", str(tmp_path / "again"), "--community")
    assert f"トピック {TOPIC}" in again.output and "choose Renew" in again.output


@pytest.mark.tool
def test_community_service_answer_is_decrypted_with_the_generated_key(cli_env, vendor, tmp_path):
    out = tmp_path / "out"
    result = _run("push-cert", "request", "--out", str(out), "--community")
    assert result.exit_code == 0, result.output
    assert "push-cert decrypt" in result.output
    # The service signs the CSR (here with the test vendor) and encrypts its answer to our
    # encryption certificate, hex encoded.
    from mdm.services.push_cert_request import PendingRequest, vendor_signed_request

    csr = x509.load_pem_x509_csr((out / "push-request.csr").read_bytes())
    signed = vendor_signed_request(
        PendingRequest("", pki.rsa_key("unused"), csr),  # type: ignore[arg-type]
        vendor["chain"].read_bytes(),
        vendor["key"].read_bytes(),
    )
    encrypted = _openssl(
        "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER",
        str(out / "push-request-encryption.pem"), input=signed,
    )  # fmt: skip
    assert encrypted.returncode == 0, encrypted.stderr
    answer = tmp_path / "answer.txt"
    answer.write_text(encrypted.stdout.hex())

    upload = tmp_path / "push-request.b64"
    decrypted = _run("push-cert", "decrypt", str(answer), "--out", str(upload))
    assert decrypted.exit_code == 0, decrypted.output
    assert upload.read_bytes().strip() == signed
    # Addressed to someone else: refused, naming the file.
    stranger = _openssl(
        "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER", str(vendor["leaf_only"]), input=signed
    )
    (tmp_path / "stranger.der").write_bytes(stranger.stdout)
    refused = _run("push-cert", "decrypt", str(tmp_path / "stranger.der"), "--out", str(tmp_path / "x"))
    assert refused.exit_code == 1 and "none of this instance's pending requests" in refused.output


def test_bad_vendor_files_and_foreign_certificates_are_refused_clearly(cli_env, vendor, tmp_path):
    out = tmp_path / "out"
    wrong_key = _run(
        "push-cert", "request", "--out", str(out), "--vendor-cert", str(vendor["chain"]),
        "--vendor-key", str(vendor["other_key"]),
    )  # fmt: skip
    assert wrong_key.exit_code == 1 and "--vendor-key does not belong" in wrong_key.output
    no_chain = _run(
        "push-cert", "request", "--out", str(out), "--vendor-cert", str(vendor["leaf_only"]),
        "--vendor-key", str(vendor["key"]),
    )  # fmt: skip
    assert no_chain.exit_code == 1 and "add its issuer" in no_chain.output
    # A refused request leaves no key behind.
    assert list((cli_env.instance_path / REQUEST_FOLDER).glob("*.key.sealed")) == []
    bad_email = _run("push-cert", "request", "--out", str(out), "--community", "--email", "消防本部")
    assert bad_email.exit_code == 1 and "--email" in bad_email.output
    neither = _run("push-cert", "request", "--out", str(out))
    assert neither.exit_code == 2 and "--community" in neither.output
    # A certificate whose key this instance never made.
    stray = _apple_issues(_foreign_csr(), tmp_path)
    refused = _run("push-cert", "import", str(stray))
    assert refused.exit_code == 1 and "no key on this instance matches" in refused.output


def _foreign_csr() -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = pki.rsa_key("foreign push key")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elsewhere")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def test_apple_certificate_as_der_and_a_pkcs12_file_both_import(cli_env, tmp_path):
    out = tmp_path / "out"
    assert _run("push-cert", "request", "--out", str(out), "--community").exit_code == 0
    pem_file = _apple_issues((out / "push-request.csr").read_bytes(), tmp_path)
    der_file = tmp_path / "MDM_Certificate.cer"
    der_file.write_bytes(
        x509.load_pem_x509_certificate(pem_file.read_bytes()).public_bytes(serialization.Encoding.DER)
    )
    der = _run("push-cert", "import", str(der_file))
    assert der.exit_code == 0, der.output
    # PKCS#12 is DER too: it still goes through the password path, key included.
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    ca, ca_key = pki.make_ca("Apple push (p12 test)")
    cert, key = pki.issue_cert(ca, ca_key, "APSP:p12", uid=TOPIC)
    p12 = tmp_path / "push.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(b"push", key, cert, None, BestAvailableEncryption(b"pw"))
    )
    imported = _run("push-cert", "import", str(p12), "--password", "pw")
    assert imported.exit_code == 0, imported.output
