"""The machine info an ADE device sends to the profile's `url`: proof of which device it is.

During Setup Assistant the device POSTs a CMS SignedData (DER, `application/pkcs7-signature`)
whose content is a plist of UDID, SERIAL, PRODUCT, VERSION, LANGUAGE (IMEI, MEID on cellular
models), signed with a device certificate issued by Apple's device CA. Unlike an Authenticate,
whose UDID and serial are only what the device claims, these are vouched for by Apple: the
signature is checked (mdm.ground.identity.signature) and the signer chained, through the
certificates the message carries, to Apple's device CA chain (shipped in mdm.ground.apple_pki and
checked against Apple Root CA's fingerprint; HIKESHI_ADE_DEVICE_CA_FILE replaces it, with a test
CA in tests). Apple says to ignore the validity dates of
certificates under "Apple iPhone Device CA" (its own have long expired), so dates are not checked;
the signatures of every link are.
"""

from __future__ import annotations

import base64
import plistlib
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms
from asn1crypto import core as asn1
from cryptography import x509

from mdm.ground.apple_pki import ApplePKIError, apple_device_ca_chain
from mdm.ground.config import Settings
from mdm.ground.identity.signature import SignatureError, verify_mdm_signature
from mdm.ground.x509util import issued_by_allowing_sha1, load_der_certificate, load_pem_bundle

MAX_MACHINE_INFO_BYTES = 64 * 1024
MAX_CHAIN = 5


class MachineInfoRefused(PermissionError):
    """Not a machine info signed through Apple's device CA (401), or unreadable (400: `bad_request`)."""

    def __init__(self, reason: str, *, bad_request: bool = False) -> None:
        super().__init__(reason)
        self.bad_request = bad_request


class DeviceCANotConfigured(RuntimeError):
    """The device CA chain cannot be used (HIKESHI_ADE_DEVICE_CA_FILE unreadable, or the shipped
    chain not Apple's): no machine info can be trusted."""


@dataclass(frozen=True)
class MachineInfo:
    udid: str
    serial: str
    product: str | None
    version: str | None
    language: str | None
    signer: x509.Certificate


def device_ca_anchors(settings: Settings) -> list[x509.Certificate]:
    """Apple's device CA chain as shipped (checked against Apple Root CA's fingerprint), unless
    HIKESHI_ADE_DEVICE_CA_FILE names another (a test CA, or a newer chain Apple publishes)."""
    if not settings.ade_device_ca_file:
        try:
            return list(apple_device_ca_chain())
        except (OSError, ValueError, ApplePKIError) as exc:
            raise DeviceCANotConfigured(f"Apple's device CA chain as shipped is unusable: {exc}") from exc
    try:
        anchors = load_pem_bundle(Path(settings.ade_device_ca_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise DeviceCANotConfigured(f"HIKESHI_ADE_DEVICE_CA_FILE: {exc}") from exc
    if not anchors:
        raise DeviceCANotConfigured("HIKESHI_ADE_DEVICE_CA_FILE holds no certificate")
    return anchors


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    # SHA-1 allowed: Apple's device CAs and the device certificates under them are RSA with SHA-1.
    return _is_ca(issuer) and issued_by_allowing_sha1(cert, issuer)


def chain_to_anchor(
    signer: x509.Certificate, carried: list[x509.Certificate], anchors: list[x509.Certificate]
) -> x509.Certificate:
    """The anchor `signer` chains to through `carried` intermediates (dates not checked)."""
    current = signer
    for _ in range(MAX_CHAIN):
        for anchor in anchors:
            if current == anchor or _issued(current, anchor):
                return anchor
        step = next((c for c in carried if c != current and _issued(current, c)), None)
        if step is None:
            break
        current = step
    raise MachineInfoRefused("the machine info is not signed through the trusted device CA")


def _carried_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    found = []
    certificates = signed_data["certificates"]
    for choice in [] if isinstance(certificates, asn1.Void) else certificates:
        if choice.name == "certificate":
            found.append(load_der_certificate(choice.chosen.dump()))
    return found


def read_machine_info(body: bytes, anchors: list[x509.Certificate]) -> MachineInfo:
    if not body or len(body) > MAX_MACHINE_INFO_BYTES:
        raise MachineInfoRefused("machine info: empty or too large", bad_request=True)
    try:
        info = cms.ContentInfo.load(body, strict=True)
        if info["content_type"].native != "signed_data":
            raise MachineInfoRefused("machine info: not a CMS SignedData", bad_request=True)
        signed_data = info["content"]
        content = signed_data["encap_content_info"]["content"]
        plist_bytes = b"" if isinstance(content, asn1.Void) or content.native is None else content.native
        carried = _carried_certificates(signed_data)
    except MachineInfoRefused:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise MachineInfoRefused("machine info: not a well-formed CMS message", bad_request=True) from exc
    if not plist_bytes:
        raise MachineInfoRefused("machine info: the message carries no content", bad_request=True)
    try:
        signer = verify_mdm_signature(base64.b64encode(body).decode(), plist_bytes)
    except SignatureError as exc:
        raise MachineInfoRefused(f"machine info: {str(exc).replace('Mdm-Signature', 'signature')}") from exc
    chain_to_anchor(signer, carried, anchors)
    try:
        values = plistlib.loads(plist_bytes)
    except Exception as exc:
        raise MachineInfoRefused("machine info: the content is not a plist", bad_request=True) from exc
    if not isinstance(values, dict):
        raise MachineInfoRefused("machine info: the plist is not a dictionary", bad_request=True)

    def text(key: str, required: bool = False) -> str | None:
        value = values.get(key)
        if isinstance(value, str) and value.strip() and len(value) <= 128:
            return value.strip()
        if required:
            raise MachineInfoRefused(f"machine info: {key} is missing", bad_request=True)
        return None

    udid, serial = text("UDID", True), text("SERIAL", True)
    assert udid is not None and serial is not None
    return MachineInfo(udid, serial.upper(), text("PRODUCT"), text("VERSION"), text("LANGUAGE"), signer)
