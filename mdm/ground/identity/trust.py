"""Which certificate authorities may vouch for a device identity."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.ca import builtin_device_cas
from mdm.ground.config import Settings
from mdm.ground.identity.signature import verify_chain
from mdm.ground.x509util import load_pem_bundle


def trusted_device_cas(session: Session, settings: Settings) -> list[x509.Certificate]:
    """The built-in enrollment CA, plus any external device CA configured by HIKESHI_DEVICE_CA_FILE."""
    cas: list[x509.Certificate] = []
    if settings.device_ca_file:
        cas.extend(load_pem_bundle(Path(settings.device_ca_file).read_bytes()))
    cas.extend(builtin_cas(session, settings))
    return cas


def verify_device_certificate(session: Session, settings: Settings, cert: x509.Certificate) -> None:
    """Raise SignatureError unless `cert` chains to a trusted device CA and is valid now: the one
    test of trust every device door (Apple, Android) applies before it asks who the device is."""
    verify_chain(cert, trusted_device_cas(session, settings), clock.now())


def builtin_cas(session: Session, settings: Settings) -> list[x509.Certificate]:
    return builtin_device_cas(session, settings)
