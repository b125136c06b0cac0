"""Signing configuration profiles as CMS SignedData, the form Apple devices install."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from mdm.ground.ca import Credential


def sign_profile(plist: bytes, signer: Credential, chain: Sequence[x509.Certificate] = ()) -> bytes:
    """DER SignedData encapsulating `plist` exactly as given.

    Binary keeps the bytes as they are: without it the builder converts line endings to CRLF
    (S/MIME canonical form) and the signature would cover different bytes than the plist served.
    """
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(plist)
        .add_signer(signer.certificate, signer.private_key, hashes.SHA256())
    )
    for cert in chain:
        builder = builder.add_certificate(cert)
    return builder.sign(Encoding.DER, [pkcs7.PKCS7Options.Binary])
