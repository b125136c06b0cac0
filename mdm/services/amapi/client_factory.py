"""The AMAPI client of this server's enterprise, built from the stored (sealed) service account."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy.orm import Session

from mdm.ground.amapi_client import AmapiClient
from mdm.ground.config import Settings
from mdm.services.amapi.credential import service_account_info


def amapi_client_for(
    session: Session,
    settings: Settings,
    *,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] | None = None,
) -> AmapiClient | None:
    """The client, or None while no service account is stored. The caller closes it (it is a
    context manager) unless it passed its own `http`."""
    info = service_account_info(session, settings)
    if info is None:
        return None
    return AmapiClient(
        info,
        api_url=settings.amapi_url,
        pubsub_url=settings.pubsub_url,
        http=http,
        sleep=sleep,
    )
