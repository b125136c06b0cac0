"""What operators are told about a token from Apple that lasts a year (the ABM server token, the
Apps and Books content token): expired, or expiring within 30 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mdm.ground import clock

EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True)
class TokenWarning:
    level: str  # "error" or "warn"
    ja: str
    en: str


@dataclass(frozen=True)
class TokenNames:
    """How the messages name the token, and where a new one is downloaded."""

    ja: str
    en: str
    portal: str


def expiry_warning(expires_at: datetime, names: TokenNames) -> TokenWarning | None:
    when = f"{expires_at:%Y-%m-%d}"
    left = expires_at - clock.now()
    if left <= timedelta(0):
        return TokenWarning(
            "error",
            f"{names.ja}は {when} に期限切れです。"
            f"{names.portal} で新しいトークンをダウンロードしてアップロードしてください。",
            f"{names.en} expired on {when}: download a new one in {names.portal} and upload it.",
        )
    if left <= EXPIRY_WARNING:
        return TokenWarning(
            "warn",
            f"{names.ja}は {when} に期限切れになります（残り {left.days} 日）。更新してください。",
            f"{names.en} expires on {when} ({left.days} days): renew it.",
        )
    return None
