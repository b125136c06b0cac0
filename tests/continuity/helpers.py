"""An org tree for continuity tests: HQ → 中央署 (救急3隊, 中央ポンプ隊, 中央指揮隊) and 北署 (北救急隊),
built through the real services."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

import mdm.services.continuity  # noqa: F401  (installs the readiness hooks, as the app factory does)
from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.models import Device, OrgUnit
from mdm.services.orgunits import assign_device, create_unit
from tests.support.factories import make_device

ADMIN = Actor("user:admin", "admin")
OPERATOR = Actor("user:operator", "operator")


@dataclass
class Tree:
    hq: OrgUnit
    central: OrgUnit
    north: OrgUnit
    ambulance3: OrgUnit
    pump: OrgUnit
    command: OrgUnit
    north_ambulance: OrgUnit


def build_tree(session: Session) -> Tree:
    def unit(data: dict[str, object]) -> OrgUnit:
        return create_unit(session, data, actor=SYSTEM)

    hq = unit({"kind": "hq", "name_ja": "火消し消防本部", "name_en": "Hikeshi Fire HQ", "code": "HQ"})
    central = unit({"kind": "station", "name_ja": "中央署", "name_en": "Central", "parent_id": hq.id})
    north = unit({"kind": "station", "name_ja": "北署", "name_en": "North", "parent_id": hq.id})
    tree = Tree(
        hq,
        central,
        north,
        unit(
            {
                "kind": "unit",
                "unit_type": "ambulance",
                "name_ja": "救急3隊",
                "name_en": "Ambulance 3",
                "code": "A3",
                "parent_id": central.id,
            }
        ),
        unit(
            {
                "kind": "unit",
                "unit_type": "pump",
                "name_ja": "中央ポンプ隊",
                "code": "P1",
                "parent_id": central.id,
            }
        ),
        unit(
            {
                "kind": "unit",
                "unit_type": "command",
                "name_ja": "中央指揮隊",
                "code": "C1",
                "parent_id": central.id,
            }
        ),
        unit(
            {
                "kind": "unit",
                "unit_type": "ambulance",
                "name_ja": "北救急隊",
                "code": "N1",
                "parent_id": north.id,
            }
        ),
    )
    session.flush()
    return tree


def tablet(session: Session, unit: OrgUnit, name: str) -> Device:
    """An enrolled tablet seen just now, placed in `unit`."""
    device = make_device(session)
    device.device_name = name
    device.last_seen_at = clock.now()
    assign_device(session, device, unit, actor=SYSTEM)
    return device
