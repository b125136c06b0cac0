"""Banners on every console page while Hikeshi runs degraded: APNs unreachable (since when), a
push certificate that has expired or expires within a week, and (for those who administer the
server) scheduled backups failing.

Operators must know that a lock they send now waits for the device's next check-in instead of
arriving within seconds, so the banner says what still works, not only what broke.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import g
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError

from mdm.doors.appctx import db_session
from mdm.ground import clock
from mdm.ground.health import service_health
from mdm.ground.push.certificates import active_push_certificate
from mdm.services.ade.server_token import active_server_token
from mdm.services.ade.server_token import expiry_warning as ade_expiry_warning
from mdm.services.vpp.token import active_token as vpp_active_token
from mdm.services.vpp.token import expiry_warning as vpp_expiry_warning
from web.console.blueprint import bp
from web.rbac import Permission

log = logging.getLogger(__name__)

# Below this, an expiring push certificate is shown on every page (the dashboard warns earlier).
CERTIFICATE_BANNER_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Banner:
    key: str  # stable id for the page and tests: "apns-outage", "push-cert-expired", ...
    level: str  # "error" or "info" (the flash classes of console.css)
    message: str


def _since(value: datetime) -> str:
    """HH:MM for an outage that began today (local time), with the date when it is older."""
    if clock.now() - value < timedelta(hours=20):
        return format_datetime(value, "HH:mm")
    return format_datetime(value, "yyyy-MM-dd HH:mm")


def current_banners() -> list[Banner]:
    session = db_session()
    banners: list[Banner] = []
    apns = service_health(session, "apns")
    if apns is not None and not apns.healthy:
        banners.append(
            Banner(
                "apns-outage",
                "error",
                _(
                    "Cannot reach APNs (since %(since)s) — commands are kept in the queue and "
                    "delivered at the next check-in",
                    since=_since(apns.since),
                ),
            )
        )
    cert = active_push_certificate(session)
    if cert is not None:
        date = format_datetime(cert.not_after, "yyyy-MM-dd HH:mm")
        left = cert.not_after - clock.now()
        if left <= timedelta(0):
            banners.append(
                Banner(
                    "push-cert-expired",
                    "error",
                    _(
                        "The APNs push certificate expired on %(date)s: devices are no longer woken "
                        "for new commands. Renew it in Apple's portal (same topic) and import it "
                        "with hikeshi push-cert import",
                        date=date,
                    ),
                )
            )
        elif left < CERTIFICATE_BANNER_WINDOW:
            banners.append(
                Banner(
                    "push-cert-expiring",
                    "info",
                    _(
                        "The APNs push certificate expires on %(date)s (in %(days)d days). Renew it "
                        "in Apple's portal (same topic) and import it with hikeshi push-cert import",
                        date=date,
                        days=left.days,
                    ),
                )
            )
    principal = g.get("principal")
    abm = ade_expiry_warning(active_server_token(session))
    if abm is not None and principal is not None and principal.can(Permission.SETTINGS_READ):
        # Without a valid token, new ABM tablets are not assigned and enroll nowhere.
        banners.append(
            Banner(
                "abm-token-expired" if abm.level == "error" else "abm-token-expiring",
                "error" if abm.level == "error" else "info",
                abm.ja if str(get_locale() or "ja") == "ja" else abm.en,
            )
        )
    vpp = vpp_expiry_warning(vpp_active_token(session))
    if vpp is not None and principal is not None and principal.can(Permission.SETTINGS_READ):
        # Without a valid content token, App Store apps get no license and do not install.
        banners.append(
            Banner(
                "vpp-token-expired" if vpp.level == "error" else "vpp-token-warning",
                "error" if vpp.level == "error" else "info",
                vpp.ja if str(get_locale() or "ja") == "ja" else vpp.en,
            )
        )
    backup = service_health(session, "backup")
    if (
        backup is not None
        and not backup.healthy
        and principal is not None
        and principal.can(Permission.SETTINGS_READ)
    ):
        banners.append(
            Banner(
                "backup-failing",
                "error",
                _(
                    "Scheduled backups are failing (since %(since)s): %(error)s — the older backups are kept",
                    since=_since(backup.since),
                    error=backup.detail or "?",
                ),
            )
        )
    return banners


def _console_banners() -> list[Banner]:
    """Computed once per request, only for signed-in users and only when a page asks."""
    if g.get("principal") is None:
        return []
    if "console_banners" not in g:
        try:
            g.console_banners = current_banners()
        except SQLAlchemyError:
            # The page itself reports an unreachable database; a banner must not hide that.
            log.warning("console banners: database unavailable", exc_info=True)
            g.console_banners = []
    return list(g.console_banners)


@bp.app_context_processor
def _banner_context() -> dict[str, object]:
    return {"console_banners": _console_banners}
