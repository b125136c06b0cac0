"""Apple's device CA chain ships with Hikeshi (issue 20): an ADE iPad's machine info is checked
against it with nothing to configure, and the shipped file is trusted only as far as it proves
itself (Apple Root CA's published fingerprint, each link's signature). Apple's device CAs and the
certificates under them are RSA with SHA-1, which cryptography's own issuer check refuses: such a
chain must still verify, or no real ADE tablet could enroll."""

from __future__ import annotations

import plistlib
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID

from mdm.ground import clock
from mdm.ground.apple_pki import APPLE_ROOT_CA_SHA256, ApplePKIError, apple_device_ca_chain, check_chain
from mdm.services.ade.machine_info import MachineInfoRefused, device_ca_anchors, read_machine_info
from tests.support.tools import require_tool

APPLE_NAMES = ["Apple iPhone Device CA", "Apple iPhone Certification Authority", "Apple Root CA"]


SUBJECT = "/C=US/O=Apple Inc./CN="


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def _key_and_csr(name: str, common_name: str, cwd: Path) -> None:
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        SUBJECT + common_name,
        cwd=cwd,
    )


def _sign(name: str, issuer: str, serial: int, extensions: str, cwd: Path) -> None:
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{issuer}.pem",
        "-CAkey",
        f"{issuer}.key",
        "-set_serial",
        str(serial),
        "-sha1",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-extensions",
        extensions,
        "-out",
        f"{name}.pem",
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def sha1_chain(tmp_path_factory: Any) -> dict[str, Any]:
    """Shaped like Apple's: RSA-1024 keys and SHA-1 signatures all the way down, made by the
    real openssl (cryptography refuses to sign with SHA-1)."""
    cwd = tmp_path_factory.mktemp("sha1-chain")
    (cwd / "ext.cnf").write_text(
        "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "[leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    )
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-sha1",
        "-days",
        "3650",
        "-subj",
        SUBJECT + "Apple Root CA",
        cwd=cwd,
    )
    _key_and_csr("iphone", APPLE_NAMES[1], cwd)
    _sign("iphone", "root", 2, "ca", cwd)
    _key_and_csr("device_ca", APPLE_NAMES[0], cwd)
    _sign("device_ca", "iphone", 3, "ca", cwd)
    _key_and_csr("device", "B1C2D3E4-0000-4000-8000-ADE0000000A1", cwd)
    _sign("device", "device_ca", 4, "leaf", cwd)
    chain: dict[str, Any] = {
        name: x509.load_pem_x509_certificate((cwd / f"{name}.pem").read_bytes())
        for name in ("root", "iphone", "device_ca", "device")
    }
    assert all(isinstance(chain[n].signature_hash_algorithm, hashes.SHA1) for n in chain)
    chain["key"] = serialization.load_pem_private_key((cwd / "device.key").read_bytes(), None)
    return chain


def _machine_info(chain: dict[str, Any]) -> bytes:
    content = plistlib.dumps({"UDID": "B1C2D3E4-0000-4000-8000-ADE0000000A1", "SERIAL": "DMPXK0SHA101"})
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(chain["device"], chain["key"], hashes.SHA256())
        .add_certificate(chain["device_ca"])
        .add_certificate(chain["iphone"])
    )
    return builder.sign(Encoding.DER, [pkcs7.PKCS7Options.Binary])


def test_the_shipped_chain_is_apples_and_proves_it() -> None:
    chain = apple_device_ca_chain()
    assert [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in chain] == APPLE_NAMES
    assert chain[-1].fingerprint(hashes.SHA256()).hex() == APPLE_ROOT_CA_SHA256
    # The lower two expired long ago; the machine-info check ignores dates, as Apple says to.
    assert chain[0].not_valid_after_utc < clock.now() and chain[1].not_valid_after_utc < clock.now()


@pytest.mark.tool
def test_a_chain_that_is_not_apples_is_refused(sha1_chain: dict[str, Any]) -> None:
    apple = list(apple_device_ca_chain())
    # Names right, signatures right, but the root is not Apple Root CA.
    impostor = [sha1_chain["device_ca"], sha1_chain["iphone"], sha1_chain["root"]]
    with pytest.raises(ApplePKIError, match="fingerprint"):
        check_chain(impostor)
    # Apple's root with a device CA it never signed.
    with pytest.raises(ApplePKIError, match="not signed by its issuer"):
        check_chain([sha1_chain["device_ca"], apple[1], apple[2]])
    with pytest.raises(ApplePKIError, match="expected"):
        check_chain(list(reversed(apple)))
    check_chain(apple)  # and the real one passes the same check


@pytest.mark.tool
def test_a_sha1_chain_like_apples_verifies(sha1_chain: dict[str, Any]) -> None:
    info = read_machine_info(_machine_info(sha1_chain), [sha1_chain["root"]])
    assert info.serial == "DMPXK0SHA101" and info.signer == sha1_chain["device"]


@pytest.mark.tool
def test_without_a_setting_apples_chain_is_the_anchor(settings: Any, sha1_chain: dict[str, Any]) -> None:
    anchors = device_ca_anchors(replace(settings, ade_device_ca_file=None))
    assert anchors == list(apple_device_ca_chain())
    # A machine info from any other CA (here one that copies Apple's names) is refused.
    with pytest.raises(MachineInfoRefused, match="trusted device CA"):
        read_machine_info(_machine_info(sha1_chain), anchors)


@pytest.mark.tool
def test_a_carried_certificate_claiming_x509_version_4_is_a_bad_request(sha1_chain: dict[str, Any]) -> None:
    body = _machine_info(sha1_chain)
    der = sha1_chain["iphone"].public_bytes(Encoding.DER)
    version_4 = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03", 1)
    assert body.count(der) == 1 and version_4 != der
    with pytest.raises(MachineInfoRefused, match="well-formed") as refused:
        read_machine_info(body.replace(der, version_4), [sha1_chain["root"]])
    assert refused.value.bad_request
