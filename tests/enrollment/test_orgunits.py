"""The org tree service: kinds in the right places, no cycles, codes unique, every change audited."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import AuditEvent, OrgUnit
from mdm.services import orgunits
from tests.enrollment.conftest import ADMIN
from tests.support.factories import make_device


def _events(session: Session, action: str) -> list[AuditEvent]:
    return list(
        session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def test_tree_ancestors_and_subtree(session: Session, tree: Any) -> None:
    assert [u.code for u in orgunits.ancestors(session, tree.pump)] == ["HQ", "ST01", "BR01"]
    assert orgunits.ancestors(session, tree.hq) == []
    assert orgunits.subtree_ids(session, tree.station.id) == {
        tree.station.id,
        tree.branch.id,
        tree.ambulance.id,
        tree.pump.id,
    }
    assert orgunits.subtree_ids(session, tree.pump.id) == {tree.pump.id}
    assert orgunits.path_label(session, tree.pump) == "東京消防本部 / 中央消防署 / 北出張所 / 北ポンプ隊"
    # English falls back to Japanese where no English name is set.
    assert orgunits.path_label(session, tree.pump, english=True) == (
        "Tokyo Fire HQ / Chuo Fire Station / North Branch / 北ポンプ隊"
    )
    nodes = orgunits.walk(orgunits.unit_tree(session))
    assert [(n.unit.code, n.depth) for n in nodes] == [
        ("HQ", 0),
        ("ST01", 1),
        ("BR01", 2),
        ("P01", 3),
        ("A01", 2),
    ]
    assert [u.code for u in orgunits.list_units(session)] == ["HQ", "ST01", "BR01", "P01", "A01"]
    assert len(_events(session, "org_unit.created")) == 5


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "station", "name_ja": "孤立署"}, "parent_id"),  # a station needs a parent
        ({"kind": "hq", "name_ja": ""}, "name_ja"),
        ({"kind": "brigade", "name_ja": "x"}, "kind"),
        ({"kind": "hq", "name_ja": "x", "code": "bad code!"}, "code"),
        ({"kind": "hq", "name_ja": "x" * 101}, "name_ja"),
        ({"kind": "hq", "name_ja": "x", "unit_type": "ambulance"}, "unit_type"),
        ({"kind": "hq", "name_ja": "x", "parent_id": 99999}, "parent_id"),
        ({"kind": "hq", "name_ja": "二重", "code": "HQ"}, "code"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    session: Session, tree: Any, data: dict[str, Any], field: str
) -> None:
    before = session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    with pytest.raises(orgunits.OrgUnitError) as caught:
        orgunits.create_unit(session, data, actor=ADMIN)
    assert field in caught.value.fields
    assert session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) == before


def test_kind_rules(session: Session, tree: Any) -> None:
    # A branch belongs to a station, never directly to the HQ.
    with pytest.raises(orgunits.OrgUnitError, match="parent_id"):
        orgunits.create_unit(
            session, {"kind": "branch", "name_ja": "x", "parent_id": tree.hq.id}, actor=ADMIN
        )
    # A 隊 may hang under the HQ (本部指揮隊).
    command = orgunits.create_unit(
        session,
        {"kind": "unit", "name_ja": "本部指揮隊", "unit_type": "command", "parent_id": tree.hq.id},
        actor=ADMIN,
    )
    assert command.parent_id == tree.hq.id and command.unit_type == "command"
    # Nothing hangs under a 隊.
    with pytest.raises(orgunits.OrgUnitError):
        orgunits.create_unit(session, {"kind": "unit", "name_ja": "x", "parent_id": command.id}, actor=ADMIN)


def test_move_refuses_cycles_and_wrong_kinds(session: Session, tree: Any) -> None:
    with pytest.raises(orgunits.OrgUnitError, match="parent_id") as caught:
        orgunits.move_unit(session, tree.station, tree.branch, actor=ADMIN)
    assert "itself" in str(caught.value.fields["parent_id"])
    with pytest.raises(orgunits.OrgUnitError):
        orgunits.move_unit(session, tree.station, tree.station, actor=ADMIN)
    with pytest.raises(orgunits.OrgUnitError):
        orgunits.move_unit(session, tree.branch, tree.hq, actor=ADMIN)
    with pytest.raises(orgunits.OrgUnitError):
        orgunits.move_unit(session, tree.station, None, actor=ADMIN)
    assert tree.station.parent_id == tree.hq.id


def test_move_a_unit_with_its_subtree(session: Session, tree: Any) -> None:
    west = orgunits.create_unit(
        session,
        {"kind": "station", "name_ja": "西消防署", "code": "ST02", "parent_id": tree.hq.id},
        actor=ADMIN,
    )
    orgunits.move_unit(session, tree.branch, west, actor=ADMIN)
    session.commit()
    assert [u.code for u in orgunits.ancestors(session, tree.pump)] == ["HQ", "ST02", "BR01"]
    assert orgunits.subtree_ids(session, west.id) == {west.id, tree.branch.id, tree.pump.id}
    assert tree.branch.id not in orgunits.subtree_ids(session, tree.station.id)
    moved = _events(session, "org_unit.moved")
    assert moved[-1].details == {"from_parent_id": tree.station.id, "to_parent_id": west.id}


def test_rename_and_update(session: Session, tree: Any) -> None:
    orgunits.rename_unit(session, tree.ambulance, name_ja="中央救急第一隊", actor=ADMIN)
    assert tree.ambulance.name_ja == "中央救急第一隊" and tree.ambulance.name_en == "Chuo Ambulance 1"
    orgunits.rename_unit(session, tree.ambulance, name_en=None, actor=ADMIN)
    assert tree.ambulance.name_en is None
    orgunits.update_unit(session, tree.ambulance, {"code": "A11", "unit_type": "rescue"}, actor=ADMIN)
    assert orgunits.find_unit_by_code(session, "A11") is tree.ambulance
    with pytest.raises(orgunits.OrgUnitError) as caught:
        orgunits.update_unit(session, tree.ambulance, {"code": "ST01"}, actor=ADMIN)
    assert "code" in caught.value.fields
    with pytest.raises(orgunits.OrgUnitError) as caught:
        orgunits.update_unit(session, tree.ambulance, {"kind": "hq"}, actor=ADMIN)
    assert "kind" in caught.value.fields
    with pytest.raises(orgunits.OrgUnitError) as caught:
        orgunits.update_unit(session, tree.station, {"unit_type": "pump"}, actor=ADMIN)
    assert "unit_type" in caught.value.fields
    changes = [e.details["changes"] for e in _events(session, "org_unit.updated")]
    assert changes[0] == {"name_ja": {"from": "中央救急隊", "to": "中央救急第一隊"}}
    assert len(changes) == 3  # renaming, clearing name_en, code + unit type


def test_assign_device(session: Session, tree: Any) -> None:
    device = make_device(session)
    assert orgunits.assign_device(session, device, tree.pump, actor=ADMIN) is True
    assert orgunits.assign_device(session, device, tree.pump, actor=ADMIN) is False
    assert device.org_unit_id == tree.pump.id
    nodes = {n.unit.code: n for n in orgunits.walk(orgunits.unit_tree(session))}
    assert nodes["P01"].device_count == 1
    orgunits.assign_device(session, device, None, actor=ADMIN)
    assert device.org_unit_id is None
    assert len(_events(session, "device.org_unit_assigned")) == 2
    assert session.get(OrgUnit, tree.pump.id) is not None
