"""Writing a console settings row that holds plain fields and one secret sealed at rest.

Several settings live in one database row each (the mail server, Android provisioning): the
console stores the fields it was given and, separately, a secret that is sealed and never read
back to a page. The rules are the same for each: only changed fields are written, a secret is
replaced only when one is typed and removed only when asked, and the row says who changed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mdm.ground import clock
from mdm.ground.secretbox import seal


@dataclass(frozen=True)
class SealedSecret:
    attribute: str  # the row's column holding the sealed bytes
    purpose: str  # the sealing purpose (mdm.ground.secretbox)
    name: str  # how the change is reported (a form field name)


def apply_settings(
    row: Any,
    clean: dict[str, Any],
    *,
    secret_key: str,
    sealed: SealedSecret,
    secret: str | None,
    clear_secret: bool,
    changed_by: str,
) -> list[str]:
    """Write `clean` and the secret into `row`; returns the names that changed (the secret's
    `sealed.name` among them), stamping the row only when something did. Never flushes."""
    changed = [name for name, value in clean.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, clean[name])
    if clear_secret and getattr(row, sealed.attribute) is not None:
        setattr(row, sealed.attribute, None)
        changed.append(sealed.name)
    elif secret:
        setattr(row, sealed.attribute, seal(secret_key, sealed.purpose, secret.encode("utf-8")))
        changed.append(sealed.name)
    if changed:
        row.updated_at = clock.now()
        row.updated_by = changed_by
    return changed
