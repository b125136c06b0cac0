"""Licenses for App Store apps: the seam between app enforcement and the volume-purchase service.

An App Store app is installed only with a device-based license (assigned to the serial number, no
Apple ID). Enforcement asks a `LicenseProvider` before every InstallApplication of a store app and
after a removal; the Apps and Books service (mdm/services/vpp) implements it. Until one is wired,
`NotConfiguredLicenses` answers "not_configured": the app is then not installed and the device's
app state says why, never pretending a license exists.

The wiring connects the provider for a session factory to LICENSE_PROVIDER (a factory function
that returns it, so a provider holding settings or an HTTP client is built by the root).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.orm import Session

from mdm.ground.hooks import HookPoint

LicenseState = Literal["assigned", "pending", "unavailable", "not_configured"]
LICENSE_STATES: tuple[LicenseState, ...] = ("assigned", "pending", "unavailable", "not_configured")


@dataclass(frozen=True)
class LicenseOutcome:
    """`assigned`: install now; `pending`: asked for, try again later; `unavailable`: none left
    (or the asset is unknown); `not_configured`: no volume-purchase token. `reason` is for people."""

    state: LicenseState
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.state not in LICENSE_STATES:
            raise ValueError(f"unknown license state {self.state!r}")

    @property
    def assigned(self) -> bool:
        return self.state == "assigned"


class LicenseProvider(Protocol):
    def ensure_device_license(
        self, session: Session, *, adam_id: str, serial_number: str
    ) -> LicenseOutcome: ...

    def release_device_license(
        self, session: Session, *, adam_id: str, serial_number: str
    ) -> LicenseOutcome: ...


NOT_CONFIGURED_REASON = "license not available: no Apps and Books (volume purchase) token is configured"


class NotConfiguredLicenses:
    """The provider while no volume-purchase token is wired: every store app is refused, with why."""

    def ensure_device_license(self, session: Session, *, adam_id: str, serial_number: str) -> LicenseOutcome:
        return LicenseOutcome("not_configured", NOT_CONFIGURED_REASON)

    def release_device_license(self, session: Session, *, adam_id: str, serial_number: str) -> LicenseOutcome:
        return LicenseOutcome("not_configured", NOT_CONFIGURED_REASON)


ProviderFactory = Callable[[], LicenseProvider]
LICENSE_PROVIDER: HookPoint[ProviderFactory] = HookPoint("app license provider")
_NOT_CONFIGURED = NotConfiguredLicenses()


def not_configured_provider() -> LicenseProvider:
    return _NOT_CONFIGURED


def license_provider(session: Session) -> LicenseProvider:
    """The provider wired for this session's factory (the last connected wins), else not configured."""
    factories = LICENSE_PROVIDER.hooks(session)
    return factories[-1]() if factories else _NOT_CONFIGURED
