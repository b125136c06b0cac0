"""The scheduler's `amapi_policies` job: every AMAPI unit's policy re-rendered each tick and
patched where its content changed (a profile edited or assigned, an app rule, a unit setting, a
unit moved or switched to AMAPI). Unchanged policies cost a render and a hash, no call to Google.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.services.amapi.client_factory import amapi_client_for
from mdm.services.amapi.enterprise import bound_enterprise
from mdm.services.amapi.mode import amapi_unit_ids
from mdm.services.amapi.policies import sync_amapi_policies


def scheduled_policy_sync(factory: sessionmaker[Session], settings: Settings) -> dict[str, Any]:
    with transaction(factory) as session:
        if bound_enterprise(session) is None:
            return {"skipped": "no enterprise bound"}
        if not amapi_unit_ids(session):
            return {"skipped": "no unit in AMAPI mode"}
        client = amapi_client_for(session, settings)
        if client is None:
            return {"skipped": "no service account"}
        with client:
            return sync_amapi_policies(session, settings, client)
