"""Apple's device CA chain, shipped with Hikeshi: what signs the machine info of an ADE iPad.

`apple_iphone_device_ca_chain.pem` holds Apple iPhone Device CA, Apple iPhone Certification
Authority and Apple Root CA, as Apple publishes them at apple.com/certificateauthority. A wrong
anchor here would let forged machine info enroll, so the file is not trusted for being in the
package: every load checks that the root is Apple Root CA by its SHA-256 fingerprint (the one Apple
publishes) and that each certificate is signed by the next. The two lower CAs expired long ago
(2014 and 2022); Apple says to ignore validity dates under Apple iPhone Device CA, and the
machine-info check does (mdm.services.ade.machine_info).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mdm.ground.x509util import issued_by_allowing_sha1

# SHA-256 of Apple Root CA (DER), as Apple lists it at apple.com/certificateauthority.
APPLE_ROOT_CA_SHA256 = "b0b1730ecbc7ff4505142c49f1295e6eda6bcaed7e2c68c5be91b5a11001f024"
CHAIN_FILE = "apple_iphone_device_ca_chain.pem"
CHAIN_NAMES = ("Apple iPhone Device CA", "Apple iPhone Certification Authority", "Apple Root CA")


class ApplePKIError(RuntimeError):
    """The shipped chain is not Apple's (changed, truncated or re-signed)."""


def check_chain(chain: list[x509.Certificate]) -> None:
    """Raise ApplePKIError unless `chain` is device CA → iPhone CA → Apple Root CA, each signed by
    the next and the root pinned by its fingerprint."""
    names = tuple(
        attribute.value
        for cert in chain
        for attribute in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    )
    if names != CHAIN_NAMES:
        raise ApplePKIError(f"Apple's device CA chain: expected {CHAIN_NAMES}, found {names}")
    root = chain[-1]
    if root.fingerprint(hashes.SHA256()).hex() != APPLE_ROOT_CA_SHA256:
        raise ApplePKIError("Apple's device CA chain: the root is not Apple Root CA (fingerprint differs)")
    for cert, issuer in zip(chain, [*chain[1:], root], strict=True):
        if not issued_by_allowing_sha1(cert, issuer):
            raise ApplePKIError(
                f"Apple's device CA chain: {cert.subject.rfc4514_string()} is not signed by its issuer"
            )


@cache
def apple_device_ca_chain() -> tuple[x509.Certificate, ...]:
    """The shipped chain, checked (device CA first, root last)."""
    data = resources.files(__name__).joinpath(CHAIN_FILE).read_bytes()
    chain = x509.load_pem_x509_certificates(data)
    check_chain(chain)
    return tuple(chain)
