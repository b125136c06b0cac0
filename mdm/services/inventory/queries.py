"""Read-only service functions the console and REST API call (web/ owns the pages)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mdm.ground.models import Device, InstalledApp, InstalledCertificate, InstalledProfile


def installed_apps(session: Session, device_id: int) -> list[InstalledApp]:
    return list(
        session.scalars(
            select(InstalledApp).where(InstalledApp.device_id == device_id).order_by(InstalledApp.identifier)
        )
    )


def installed_profiles(session: Session, device_id: int) -> list[InstalledProfile]:
    return list(
        session.scalars(
            select(InstalledProfile)
            .where(InstalledProfile.device_id == device_id)
            .order_by(InstalledProfile.identifier)
        )
    )


def installed_certificates(session: Session, device_id: int) -> list[InstalledCertificate]:
    return list(
        session.scalars(
            select(InstalledCertificate)
            .where(InstalledCertificate.device_id == device_id)
            .order_by(InstalledCertificate.not_after)
        )
    )


def devices_with_app(session: Session, identifier: str) -> list[Device]:
    """Devices that have the app installed ("has app X" filter)."""
    return list(
        session.scalars(
            select(Device)
            .join(InstalledApp, InstalledApp.device_id == Device.id)
            .where(InstalledApp.identifier == identifier)
            .order_by(Device.id)
        )
    )


@dataclass(frozen=True)
class AppCount:
    identifier: str
    name: str | None
    devices: int


def apps_report(session: Session) -> list[AppCount]:
    """Every app across the fleet with how many devices have it, most widespread first."""
    rows = session.execute(
        select(InstalledApp.identifier, func.max(InstalledApp.name), func.count(InstalledApp.device_id))
        .group_by(InstalledApp.identifier)
        .order_by(func.count(InstalledApp.device_id).desc(), InstalledApp.identifier)
    ).all()
    return [AppCount(identifier, name, count) for identifier, name, count in rows]
