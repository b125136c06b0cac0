"""The organisation tree: 消防本部 (hq) → 消防署 (station) → 出張所 (branch) → 隊 (unit).

Service functions take the Session and never commit; every change is audited in the same
transaction. Outside data (console forms, API bodies, CLI options) is validated by the marshmallow
schemas here, and a refusal names the field (`OrgUnitError.fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, aliased

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.hooks import HookPoint
from mdm.ground.models import Device, OrgUnit, OrgUnitKind, UnitType

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$"


class OrgUnitError(ValueError):
    """A refused change; `fields` maps each offending field to its messages."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        names = ", ".join(sorted(fields))
        super().__init__(f"invalid org unit: {names}")
        self.fields = dict(fields)

    @classmethod
    def one(cls, field_name: str, message: str) -> OrgUnitError:
        return cls({field_name: [message]})


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class OrgUnitSchema(Schema):
    """The fields of an org unit as administrators give them."""

    kind = fields.String(required=True, validate=validate.OneOf(OrgUnitKind.ALL))
    name_ja = fields.String(required=True, validate=validate.Length(min=1, max=100))
    name_en = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=100))
    code = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.Regexp(
            CODE_PATTERN, error="1–32 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ),
    )
    unit_type = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(UnitType.ALL))
    parent_id = fields.Integer(allow_none=True, load_default=None, strict=True)

    @validates_schema
    def _unit_type_only_for_units(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("unit_type") and data.get("kind", OrgUnitKind.UNIT) != OrgUnitKind.UNIT:
            raise ValidationError("only a 隊 (unit) has a unit type", "unit_type")


def _load(schema: Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    clean_input = {key: _stripped(value) for key, value in data.items()}
    # An empty optional text means "none": forms send "" for a cleared field.
    for key in ("name_en", "code", "unit_type"):
        if clean_input.get(key) == "":
            clean_input[key] = None
    try:
        return dict(schema.load(clean_input))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise OrgUnitError(messages) from exc


# -- reading -------------------------------------------------------------------------------------


def get_unit(session: Session, unit_id: int) -> OrgUnit | None:
    return session.get(OrgUnit, unit_id)


def find_unit_by_code(session: Session, code: str) -> OrgUnit | None:
    return session.scalars(select(OrgUnit).where(OrgUnit.code == code.strip())).first()


def list_units(session: Session) -> list[OrgUnit]:
    """Every unit, parents before children (tree order)."""
    return [node.unit for node in walk(unit_tree(session, with_counts=False))]


@dataclass
class UnitNode:
    unit: OrgUnit
    depth: int
    children: list[UnitNode] = field(default_factory=list)
    device_count: int = 0  # devices directly in this unit


def unit_tree(session: Session, *, with_counts: bool = True) -> list[UnitNode]:
    """The forest of units (normally one HQ), children ordered by kind then name. The device counts
    are a GROUP BY over the whole fleet: a drop-down of units (list_units) goes without them."""
    units = list(session.scalars(select(OrgUnit)))
    counts: dict[int | None, int] = {}
    if with_counts:
        counts = dict(
            session.execute(
                select(Device.org_unit_id, func.count(Device.id))
                .where(Device.org_unit_id.is_not(None))
                .group_by(Device.org_unit_id)
            ).all()
        )
    by_parent: dict[int | None, list[OrgUnit]] = {}
    for unit in units:
        by_parent.setdefault(unit.parent_id, []).append(unit)
    order = {kind: index for index, kind in enumerate(OrgUnitKind.ALL)}

    def build(parent_id: int | None, depth: int) -> list[UnitNode]:
        children = sorted(
            by_parent.get(parent_id, []), key=lambda u: (order.get(u.kind, 99), u.code or "", u.name_ja)
        )
        return [UnitNode(u, depth, build(u.id, depth + 1), int(counts.get(u.id, 0))) for u in children]

    return build(None, 0)


def walk(nodes: list[UnitNode]) -> list[UnitNode]:
    """Depth-first, parents first."""
    out: list[UnitNode] = []
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def _parent_map(session: Session) -> dict[int, int | None]:
    return {row[0]: row[1] for row in session.execute(select(OrgUnit.id, OrgUnit.parent_id))}


def subtree_ids(session: Session, unit_id: int) -> set[int]:
    """The unit and every unit below it."""
    children: dict[int | None, list[int]] = {}
    for child, parent in _parent_map(session).items():
        children.setdefault(parent, []).append(child)
    found = {unit_id}
    stack = [unit_id]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def ancestors(session: Session, unit: OrgUnit) -> list[OrgUnit]:
    """The units above `unit`, root first (the unit itself not included)."""
    return list(reversed(unit_chains(session, {unit.id}).get(unit.id, [unit])[1:]))


def _units_up_statement() -> Any:
    up = (
        select(OrgUnit.id, OrgUnit.parent_id)
        .where(OrgUnit.id.in_(bindparam("unit_ids", expanding=True)))
        .cte("unit_up", recursive=True)
    )
    parent = aliased(OrgUnit)
    up = up.union(select(parent.id, parent.parent_id).where(parent.id == up.c.parent_id))
    return select(OrgUnit).where(OrgUnit.id.in_(select(up.c.id)))


# Built once: every Android sync asks for its unit's chain, and building the statement (a fresh
# alias each time, so never found in SQLAlchemy's statement cache) cost a third of a sync's CPU.
_UNITS_UP = _units_up_statement()


def unit_chains(session: Session, unit_ids: set[int]) -> dict[int, list[OrgUnit]]:
    """Each unit followed by the units above it, nearest first, for all of `unit_ids` in one
    query (a recursive CTE up the tree): never the whole tree (14,000 units in a prefecture)."""
    if not unit_ids:
        return {}
    nodes = {u.id: u for u in session.scalars(_UNITS_UP, {"unit_ids": sorted(unit_ids)})}
    chains: dict[int, list[OrgUnit]] = {}
    for unit_id in unit_ids:
        chain: list[OrgUnit] = []
        current: int | None = unit_id
        while current is not None and current in nodes and len(chain) <= len(nodes):
            chain.append(nodes[current])
            current = nodes[current].parent_id
        chains[unit_id] = chain
    return chains


def path_label(session: Session, unit: OrgUnit, *, english: bool = False, separator: str = " / ") -> str:
    """ "東京消防本部 / 中央消防署 / 救急隊" (English names where set when `english`)."""
    names = []
    for node in [*ancestors(session, unit), unit]:
        names.append(node.name_en if english and node.name_en else node.name_ja)
    return separator.join(names)


def path_labels(session: Session, unit_ids: set[int], *, separator: str = " / ") -> dict[int, str]:
    """path_label (Japanese) of each of `unit_ids`, in one query whatever their number."""
    return {
        unit_id: separator.join(u.name_ja for u in reversed(chain))
        for unit_id, chain in unit_chains(session, unit_ids).items()
    }


# -- changing ------------------------------------------------------------------------------------


def _check_parent(session: Session, kind: str, parent: OrgUnit | None) -> None:
    allowed = OrgUnitKind.ALLOWED_PARENTS[kind]
    parent_kind = parent.kind if parent is not None else None
    if parent_kind not in allowed:
        kind_ja = OrgUnitKind.LABELS[kind][0]
        if parent is None:
            raise OrgUnitError.one("parent_id", f"a {kind} ({kind_ja}) must have a parent unit")
        wanted = " or ".join(k for k in allowed if k) or "nothing (it is a root)"
        raise OrgUnitError.one(
            "parent_id", f"a {kind} ({kind_ja}) cannot be placed under a {parent_kind}; allowed: {wanted}"
        )


def _check_code_free(session: Session, code: str | None, unit_id: int | None = None) -> None:
    if code is None:
        return
    taken = session.scalars(select(OrgUnit).where(OrgUnit.code == code)).first()
    if taken is not None and taken.id != unit_id:
        raise OrgUnitError.one("code", f"code {code!r} is already used by {taken.name_ja}")


def _resolve_parent(session: Session, parent_id: int | None) -> OrgUnit | None:
    if parent_id is None:
        return None
    parent = session.get(OrgUnit, parent_id)
    if parent is None:
        raise OrgUnitError.one("parent_id", f"no org unit with id {parent_id}")
    return parent


def create_unit(session: Session, data: Mapping[str, Any], *, actor: Actor) -> OrgUnit:
    """Create a unit from outside data: kind, name_ja, name_en?, code?, unit_type?, parent_id?."""
    clean = _load(OrgUnitSchema(), data)
    parent = _resolve_parent(session, clean["parent_id"])
    _check_parent(session, clean["kind"], parent)
    _check_code_free(session, clean["code"])
    now = clock.now()
    unit = OrgUnit(
        parent_id=parent.id if parent else None,
        kind=clean["kind"],
        unit_type=clean["unit_type"],
        name_ja=clean["name_ja"],
        name_en=clean["name_en"],
        code=clean["code"],
        created_at=now,
        updated_at=now,
    )
    session.add(unit)
    session.flush()
    record_event(session, actor, "org_unit.created", "org_unit", unit.id, _describe(unit))
    return unit


_UPDATABLE = ("name_ja", "name_en", "code", "unit_type")


def update_unit(session: Session, unit: OrgUnit, changes: Mapping[str, Any], *, actor: Actor) -> OrgUnit:
    """Change names, code or unit type (only the keys given). Moving is `move_unit`."""
    unknown = sorted(set(changes) - set(_UPDATABLE))
    if unknown:
        raise OrgUnitError({name: ["cannot be changed here"] for name in unknown})
    merged = {
        "kind": unit.kind,
        "name_ja": unit.name_ja,
        "name_en": unit.name_en,
        "code": unit.code,
        "unit_type": unit.unit_type,
        **changes,
    }
    clean = _load(OrgUnitSchema(), merged)
    _check_code_free(session, clean["code"], unit.id)
    before = {key: getattr(unit, key) for key in _UPDATABLE}
    for key in _UPDATABLE:
        setattr(unit, key, clean[key])
    after = {key: getattr(unit, key) for key in _UPDATABLE}
    changed = {
        key: {"from": before[key], "to": after[key]} for key in _UPDATABLE if before[key] != after[key]
    }
    if changed:
        unit.updated_at = clock.now()
        session.flush()
        record_event(session, actor, "org_unit.updated", "org_unit", unit.id, {"changes": changed})
    return unit


_KEEP: Any = object()


def rename_unit(
    session: Session, unit: OrgUnit, *, name_ja: str | None = None, name_en: Any = _KEEP, actor: Actor
) -> OrgUnit:
    """Rename; `name_en=None` clears the English name, leaving it out keeps it."""
    changes: dict[str, Any] = {}
    if name_ja is not None:
        changes["name_ja"] = name_ja
    if name_en is not _KEEP:
        changes["name_en"] = name_en
    return update_unit(session, unit, changes, actor=actor)


def move_unit(session: Session, unit: OrgUnit, new_parent: OrgUnit | None, *, actor: Actor) -> OrgUnit:
    """Hang `unit` (and everything below it) under `new_parent`; never under itself."""
    if new_parent is not None and new_parent.id in subtree_ids(session, unit.id):
        raise OrgUnitError.one("parent_id", "a unit cannot be moved under itself or one of its own units")
    _check_parent(session, unit.kind, new_parent)
    old_parent_id = unit.parent_id
    new_parent_id = new_parent.id if new_parent is not None else None
    if old_parent_id == new_parent_id:
        return unit
    unit.parent_id = new_parent_id
    unit.parent = new_parent
    unit.updated_at = clock.now()
    session.flush()
    record_event(
        session,
        actor,
        "org_unit.moved",
        "org_unit",
        unit.id,
        {"from_parent_id": old_parent_id, "to_parent_id": new_parent_id},
    )
    for hook in UNIT_MOVED.hooks(session):
        hook(session, unit, actor)
    return unit


# Services that follow a unit or a device to its new place (profiles install and remove what
# changed), connected by the wiring (mdm.roots.wiring); called after the move is written and
# audited, in the same transaction.
UnitMovedHook = Callable[[Session, OrgUnit, Actor], None]
UNIT_MOVED: HookPoint[UnitMovedHook] = HookPoint("unit moved")
DeviceMovedHook = Callable[[Session, Device, int | None, int | None, Actor], None]
DEVICE_MOVED: HookPoint[DeviceMovedHook] = HookPoint("device moved")


def on_unit_moved(fn: UnitMovedHook) -> UnitMovedHook:
    """Marks `fn(session, unit, actor)` as written for UNIT_MOVED (run after a unit and its subtree
    change parent), for the reader only: it registers nothing, the wiring connects it."""
    return fn


def on_device_moved(fn: DeviceMovedHook) -> DeviceMovedHook:
    """Marks `fn(session, device, from_unit_id, to_unit_id, actor)` as written for DEVICE_MOVED,
    for the reader only: the wiring connects it."""
    return fn


def assign_device(session: Session, device: Device, unit: OrgUnit | None, *, actor: Actor) -> bool:
    """Place a device in a unit (None: in no unit); False when it already was there.

    The one way a device changes unit (enrollment, the console, a spare swap): every service
    connected to DEVICE_MOVED then follows it."""
    new_id = unit.id if unit is not None else None
    if device.org_unit_id == new_id:
        return False
    old_id = device.org_unit_id
    device.org_unit_id = new_id
    device.org_unit = unit
    session.flush()
    record_event(
        session,
        actor,
        "device.org_unit_assigned",
        "device",
        device.id,
        {"from_org_unit_id": old_id, "to_org_unit_id": new_id},
    )
    for hook in DEVICE_MOVED.hooks(session):
        hook(session, device, old_id, new_id, actor)
    return True


def _describe(unit: OrgUnit) -> dict[str, Any]:
    return {
        "kind": unit.kind,
        "name_ja": unit.name_ja,
        "name_en": unit.name_en,
        "code": unit.code,
        "unit_type": unit.unit_type,
        "parent_id": unit.parent_id,
    }
