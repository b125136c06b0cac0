"""What `hikeshi ade status` and `hikeshi vpp status` print alike about a token from Apple: its
own fields, expiry, last sync and error aligned, then its expiry warning (on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

import click
from sqlalchemy.orm import Session

from mdm.ground.db import transaction
from mdm.ground.token_expiry import TokenWarning


class SyncedToken(Protocol):
    last_sync_at: datetime | None
    last_error: str | None


T = TypeVar("T", bound=SyncedToken)


def moment(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC" if when else "never"


def token_status(
    ctx: Any,
    find: Callable[[Session], T | None],
    missing: str,
    fields: Callable[[T], list[tuple[str, str]]],
    warn: Callable[[T], TokenWarning | None],
    *,
    error_label: str = "error",
    then: Callable[[Session], None] | None = None,
) -> TokenWarning | None:
    """Print the active token (`missing` and exit 1 when there is none): its own `fields`, its last
    sync and error, then its warning; `then` prints more in the same transaction."""
    with transaction(ctx.session_factory()) as session:
        row = find(session)
        if row is None:
            click.echo(missing)
            sys.exit(1)
        lines = [*fields(row), ("last sync", moment(row.last_sync_at))]
        width = max(len(label) for label, _ in [*lines, (error_label, "")]) + 1
        for label, value in lines:
            click.echo(f"{label + ':':<{width}} {value}")
        if row.last_error:
            click.echo(f"{error_label + ':':<{width}} {row.last_error}")
        warning = warn(row)
        if then is not None:
            then(session)
    if warning:
        click.echo(f"WARNING: {warning.en}", err=True)
    return warning
