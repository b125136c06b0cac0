"""Registry of payload kinds: name → schema and titles. Renderers dispatch on the same names."""

from __future__ import annotations

from profiles.payloads import certificates, passcode, restrictions, web_content_filter, wifi
from profiles.payloads.common import PayloadKind

KINDS: dict[str, PayloadKind] = {
    kind.name: kind
    for kind in (
        restrictions.KIND,
        wifi.KIND,
        passcode.KIND,
        certificates.KIND,
        web_content_filter.KIND,
    )
}


def get_kind(name: str) -> PayloadKind:
    """The kind called `name`; KeyError for an unknown one."""
    return KINDS[name]


def kind_names() -> tuple[str, ...]:
    return tuple(KINDS)


__all__ = ["KINDS", "PayloadKind", "get_kind", "kind_names"]
