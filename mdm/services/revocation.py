"""The built-in device CA's certificate revocation list, as served at /pki/device-ca.crl.

It lists every certificate of the active CA generation that was revoked and has not expired yet
(an expired one is refused anyway): Wi-Fi certificates of lost or wiped tablets, identities of
records taken out of service or replaced. Built again only when a revocation changed it or half its
lifetime has passed, so a RADIUS server polling it costs one small query."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.ca import CANotReady, active_record, device_ca
from mdm.ground.config import Settings
from mdm.ground.crl import build_crl
from mdm.ground.models import CertificatePurpose, DeviceCertificate
from mdm.ground.x509util import issued_by, load_pem_bundle

# RADIUS servers fetch it on a schedule; a day covers a night without the server, half a day is
# when it is rebuilt so a fetch never gets one about to lapse.
LIFETIME = timedelta(days=1)


@dataclass(frozen=True)
class _Built:
    key: tuple[object, ...]
    der: bytes
    built_at: datetime


_lock = threading.Lock()
_cache: dict[str, _Built] = {}


def device_ca_crl(session: Session, settings: Settings) -> bytes:
    now = clock.now()
    live = (DeviceCertificate.revoked_at.is_not(None), DeviceCertificate.not_after > now)
    count, latest = session.execute(
        select(func.count(), func.max(DeviceCertificate.revoked_at)).where(*live)
    ).one()
    row = active_record(session, CertificatePurpose.DEVICE_CA)
    if row is None:
        raise CANotReady("the built-in CA has not been created yet")
    key = (count, latest)
    with _lock:
        built = _cache.get(row.cert_pem)
        if built is not None and built.key == key and now - built.built_at < LIFETIME / 2:
            return built.der
    ca = device_ca(session, settings)
    rows = session.execute(select(DeviceCertificate.pem, DeviceCertificate.revoked_at).where(*live)).all()
    revoked = []
    for pem, when in rows:
        if when is None:  # excluded by the query; narrows the type
            continue
        cert = load_pem_bundle(pem.encode())[0]
        if issued_by(cert, ca.certificate):
            revoked.append((cert.serial_number, when))
    # Monotonic across rebuilds and processes (RFC 5280 asks CRL numbers to increase).
    der = build_crl(ca, revoked, now=now, lifetime=LIFETIME, number=int(now.timestamp() * 1000))
    with _lock:
        # Keyed by the CA certificate itself: one process may serve several instances (tests).
        _cache[row.cert_pem] = _Built(key, der, now)
    return der
