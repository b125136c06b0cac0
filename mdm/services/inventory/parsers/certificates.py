"""CertificateList → the certificates installed on the device (subject, issuer, expiry)."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Command, Device, InstalledCertificate
from mdm.ground.x509util import load_der_certificate
from mdm.services.inventory.events import inventory_updated
from mdm.services.inventory.facts import facts_for
from mdm.services.inventory.history import ChangeKind, record_change
from mdm.services.inventory.parsers.common import acknowledged
from mdm.services.inventory.values import boolean, text


def parse_certificate_list(session: Session, command: Command, report: dict[str, Any]) -> None:
    if not acknowledged(command, report):
        return
    items = report.get("CertificateList")
    if not isinstance(items, list):
        return
    apply_certificate_list(session, command.device, items)
    inventory_updated(session, command.device, "CertificateList")


def _describe(item: dict[str, Any]) -> dict[str, Any] | None:
    data = item.get("Data")
    common_name = text(item.get("CommonName"))
    row: dict[str, Any] = {"common_name": common_name, "subject": None, "issuer": None, "not_after": None}
    if isinstance(data, bytes) and data:
        row["fingerprint_sha256"] = hashlib.sha256(data).hexdigest()
        try:
            cert = load_der_certificate(data)
        except ValueError:
            return row  # kept by fingerprint and name; a device may list something we cannot parse
        row["subject"] = cert.subject.rfc4514_string()[:512]
        row["issuer"] = cert.issuer.rfc4514_string()[:512]
        row["not_after"] = cert.not_valid_after_utc
        return row
    if common_name is None:
        return None
    row["fingerprint_sha256"] = hashlib.sha256(b"cn:" + common_name.encode()).hexdigest()
    return row


def apply_certificate_list(session: Session, device: Device, items: list[Any]) -> None:
    now = clock.now()
    existing = {
        c.fingerprint_sha256: c
        for c in session.scalars(
            select(InstalledCertificate).where(InstalledCertificate.device_id == device.id)
        )
    }
    first_inventory = facts_for(session, device.id).certificates_at is None
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        described = _describe(item)
        if described is None or described["fingerprint_sha256"] in seen:
            continue
        fp = described["fingerprint_sha256"]
        seen.add(fp)
        row = existing.get(fp)
        if row is None:
            row = InstalledCertificate(device_id=device.id, fingerprint_sha256=fp, first_seen_at=now)
            session.add(row)
            if not first_inventory:
                record_change(
                    session, device.id, ChangeKind.CERTIFICATE_ADDED, described["common_name"] or fp
                )
        row.common_name = described["common_name"]
        row.subject = described["subject"]
        row.issuer = described["issuer"]
        row.not_after = described["not_after"]
        row.is_identity = bool(boolean(item.get("IsIdentity")))
    for fp, row in existing.items():
        if fp not in seen:
            record_change(session, device.id, ChangeKind.CERTIFICATE_REMOVED, row.common_name or fp)
            session.delete(row)
    facts_for(session, device.id).certificates_at = now
