"""The push certificate's state as the console says it, in the reader's language.

mdm.ground.push.certificates.expiry_warning speaks English to the command line and the server log; the
console builds the same sentences from the same facts through its catalog.
"""

from __future__ import annotations

from flask_babel import gettext as _

from mdm.ground import clock
from mdm.ground.models import PushCertificate
from mdm.ground.push.certificates import EXPIRY_WARNING, days_left


def push_certificate_warning(row: PushCertificate | None) -> str | None:
    """A sentence for operators when the certificate is missing, expired or expiring soon."""
    if row is None:
        return _(
            "No APNs push certificate is installed: "
            "devices get commands only when they check in by themselves."
        )
    date = f"{row.not_after:%Y-%m-%d}"
    if days_left(row) < 0:
        return _(
            "The APNs push certificate (%(topic)s) expired on %(date)s. Renew it now.",
            topic=row.topic,
            date=date,
        )
    if row.not_after - clock.now() <= EXPIRY_WARNING:
        return _(
            "The APNs push certificate (%(topic)s) expires on %(date)s, in %(days)d days. "
            "Renew it (same Apple ID, same topic) before then.",
            topic=row.topic,
            date=date,
            days=days_left(row),
        )
    return None


def push_certificate_refused(error: str) -> str:
    return _("APNs refused the push certificate: %(error)s", error=error)
