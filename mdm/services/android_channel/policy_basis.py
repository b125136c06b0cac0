"""What an agent's policy was built from, so that a sync can answer "unchanged" without building
it again (issue 18: reading and rendering the policy was most of an empty sync's statements and
CPU, to find the version the agent already had).

A policy is built from the tables of POLICY_INPUT_TABLES, the device's own fields that a policy
names (its unit, and the fields an app's managed configuration may name), the instance's secret
(the Wi-Fi passphrases it carries) and public URL (where the APKs are), and the code that renders
it. The database raises the policy generation at any write to those tables; `build_app` raises it
when a process starts, since a new release may render a policy differently. The basis is the
generation with a MAC over the rest: equal bases build equal policies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mdm.ground.db import is_postgres
from mdm.ground.models import Device, PolicyGeneration

# The generation, as a column of a request's identity read (one statement for both).
CURRENT_GENERATION: Any = (
    select(PolicyGeneration.value)
    .where(PolicyGeneration.id == 1)
    .scalar_subquery()
    .label("policy_generation")
)


def raise_policy_generation(session: Session) -> None:
    """Every agent's next sync builds its policy again (a process of a new release starts). The
    row is written if it is missing (a database emptied by hand): without it, every sync builds."""
    dialect_insert = postgresql_insert if is_postgres(session) else sqlite_insert
    stmt = dialect_insert(PolicyGeneration).values(id=1, value=1)
    session.execute(
        stmt.on_conflict_do_update(index_elements=["id"], set_={"value": PolicyGeneration.value + 1})
    )


def policy_basis(device: Device, generation: int, *, secret_key: str, public_url: str | None) -> str:
    """The basis a policy built now for `device` has (at most 85 characters)."""
    # The fields of the device a policy may name (mdm.services.apps.configuration's substitution
    # values; the unit's own fields are in the watched tables).
    named = [
        public_url or "",
        device.id,
        device.org_unit_id,
        device.device_name,
        device.serial_number,
        device.asset_tag,
        device.udid,
    ]
    mac = hmac.new(secret_key.encode(), json.dumps(named).encode(), hashlib.sha256).hexdigest()
    return f"{generation}:{mac}"
