"""Which devices a fleet-wide check of some rules has to look at, said in SQL.

A rule with a candidate filter can flag only the devices it selects; a device outside it with no
open finding of the rule would come out unchanged, so the scheduled checks skip it instead of
loading 100,000 devices to find the few hundred offline. The filters are supersets: the rule
itself still decides, with each unit's own policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists, func, or_, select, true

from mdm.ground.models import ComplianceFinding, Device, DeviceCertificate
from mdm.services.unit_policy import PolicyBook

Candidates = Callable[[PolicyBook, datetime], ColumnElement[bool]]


def maybe_offline(book: PolicyBook, now: datetime) -> ColumnElement[bool]:
    # The shortest limit of any unit: a device seen since then is within every unit's limit.
    shortest = min(p.offline_limit_hours for p in book.every_policy())
    last = func.coalesce(Device.last_seen_at, Device.enrolled_at)
    return last < now - timedelta(hours=shortest)


def maybe_expiring(book: PolicyBook, now: datetime) -> ColumnElement[bool]:
    widest = max(p.certificate_warning_days for p in book.every_policy())
    return exists(
        select(DeviceCertificate.id).where(
            DeviceCertificate.device_id == Device.id,
            DeviceCertificate.revoked_at.is_(None),
            DeviceCertificate.not_after <= now + timedelta(days=widest),
        )
    )


def maybe_update_overdue(book: PolicyBook, now: datetime) -> ColumnElement[bool]:
    # OS update targets are Apple versions (Android is judged by its patch level).
    return Device.platform == "apple"


CANDIDATES: dict[str, Candidates] = {
    "offline_too_long": maybe_offline,
    "identity_certificate_expiring": maybe_expiring,
    "os_update_overdue": maybe_update_overdue,
}


def candidates_for(rules: Iterable[str], book: PolicyBook, now: datetime) -> ColumnElement[bool]:
    """Devices the rules could flag, or that hold an open finding of theirs (it may clear)."""
    names = sorted(set(rules))
    if not names or any(name not in CANDIDATES for name in names):
        return true()
    holding = exists(
        select(ComplianceFinding.id).where(
            ComplianceFinding.device_id == Device.id,
            ComplianceFinding.rule.in_(names),
            ComplianceFinding.closed_at.is_(None),
        )
    )
    return or_(holding, *(CANDIDATES[name](book, now) for name in names))
