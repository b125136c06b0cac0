"""A unit's OS update policy: its own row, else its nearest ancestor's value field by field, else
the fleet default row (org_unit_id NULL), else nothing enforced.

What the policy says: which version (a number, or "latest": the newest one the fleet was
offered), how soon after its release it must be installed, a fixed deadline, the local time a
forced install is scheduled, the local windows when no update may install (a shift change), and
how Android tablets take system updates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, literal, or_, select
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor, record_event
from mdm.ground.models import OrgUnit, OsUpdatePolicy
from mdm.services.unit_inheritance import InheritedBook, nearest_values, set_own_values

LATEST = "latest"
ANDROID_MODES = ("automatic", "windowed", "postpone")
MAX_DAYS_AFTER_RELEASE = 365
MAX_WINDOWS = 8
DEFAULT_INSTALL_TIME = "02:00"

_VERSION = re.compile(r"^\d{1,3}\.\d{1,3}(\.\d{1,3})?\Z")
_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d\Z")


@dataclass(frozen=True)
class Window:
    """Local clock times; an end before the start spans midnight."""

    start: str
    end: str

    @property
    def start_minutes(self) -> int:
        return minutes_of(self.start)

    @property
    def end_minutes(self) -> int:
        return minutes_of(self.end)

    def covers(self, minute: int) -> bool:
        start, end = self.start_minutes, self.end_minutes
        return start <= minute < end if start <= end else minute >= start or minute < end


@dataclass(frozen=True)
class UpdatePolicy:
    target: str | None = None
    days_after_release: int | None = None
    deadline: datetime | None = None
    install_time: str = DEFAULT_INSTALL_TIME
    blocked_windows: tuple[Window, ...] = ()
    android_mode: str | None = None

    @property
    def enforced(self) -> bool:
        return self.target is not None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["deadline"] = self.deadline.isoformat() if self.deadline else None
        values["blocked_windows"] = [asdict(w) for w in self.blocked_windows]
        return values


FIELDS = ("target", "days_after_release", "deadline", "install_time", "blocked_windows", "android_mode")


def minutes_of(clock_time: str) -> int:
    hours, minutes = clock_time.split(":")
    return int(hours) * 60 + int(minutes)


def input_problems(values: dict[str, Any]) -> dict[str, list[str]]:
    """Field -> messages for values a person typed that the policy could not use (None inherits)."""
    problems: dict[str, list[str]] = {}
    unknown = sorted(set(values) - set(FIELDS))
    for name in unknown:
        problems[name] = ["unknown field"]
    target = values.get("target")
    if target is not None and not (isinstance(target, str) and (target == LATEST or _VERSION.match(target))):
        problems["target"] = ['must be a version like 17.5 or 17.5.1, or "latest"']
    days = values.get("days_after_release")
    if days is not None and not (
        isinstance(days, int) and not isinstance(days, bool) and 0 <= days <= MAX_DAYS_AFTER_RELEASE
    ):
        problems["days_after_release"] = [
            f"must be a whole number of days from 0 to {MAX_DAYS_AFTER_RELEASE}"
        ]
    deadline = values.get("deadline")
    if deadline is not None and not (isinstance(deadline, datetime) and deadline.tzinfo is not None):
        problems["deadline"] = ["must be a date and time with its offset, e.g. 2026-12-24T02:00:00+09:00"]
    install_time = values.get("install_time")
    if install_time is not None and not (isinstance(install_time, str) and _CLOCK_TIME.match(install_time)):
        problems["install_time"] = ["must be a local time HH:MM, e.g. 02:00"]
    windows = values.get("blocked_windows")
    if windows is not None:
        if not isinstance(windows, list) or len(windows) > MAX_WINDOWS:
            problems["blocked_windows"] = [f"must be a list of at most {MAX_WINDOWS} windows"]
        else:
            for index, window in enumerate(windows):
                if not (
                    isinstance(window, dict)
                    and set(window) == {"start", "end"}
                    and all(
                        isinstance(window[k], str) and _CLOCK_TIME.match(window[k]) for k in ("start", "end")
                    )
                    and window["start"] != window["end"]
                ):
                    problems["blocked_windows"] = [
                        f'window {index}: must be {{"start": "HH:MM", "end": "HH:MM"}}, two times'
                    ]
                    break
    mode = values.get("android_mode")
    if mode is not None and mode not in ANDROID_MODES:
        problems["android_mode"] = [f"must be one of {', '.join(ANDROID_MODES)}"]
    return problems


def _typed(name: str, value: Any) -> Any:
    if name == "blocked_windows":
        return tuple(Window(str(w["start"]), str(w["end"])) for w in value)
    return value


class UpdatePolicyBook(InheritedBook[UpdatePolicy]):
    """Every update policy row and the unit tree, loaded once, for many devices."""

    def __init__(self, session: Session) -> None:
        super().__init__(session, session.scalars(select(OsUpdatePolicy)), UpdatePolicy(), FIELDS, _typed)

    def own(self, org_unit_id: int | None) -> dict[str, Any]:
        row = self.rows.get(org_unit_id)
        own = {name: getattr(row, name) if row is not None else None for name in FIELDS}
        if own["deadline"] is not None:
            own["deadline"] = own["deadline"].isoformat()
        return own

    def inherited(self, org_unit_id: int | None) -> UpdatePolicy:
        return UpdatePolicy() if org_unit_id is None else self.for_unit(self.parents.get(org_unit_id))


def policy_for_unit(session: Session, org_unit_id: int | None) -> UpdatePolicy:
    """One unit's effective policy in one statement (the Android agent's sync, a hot path): the
    policy rows of the unit, its ancestors (a recursive walk up the tree) and the default row."""
    start = select(OrgUnit.id, OrgUnit.parent_id, literal(0).label("depth")).where(OrgUnit.id == org_unit_id)
    walk = start.cte("chain", recursive=True)
    walk = walk.union_all(
        select(OrgUnit.id, OrgUnit.parent_id, (walk.c.depth + 1).label("depth")).where(
            OrgUnit.id == walk.c.parent_id, walk.c.depth < 64
        )
    )
    rows = session.execute(
        select(OsUpdatePolicy, walk.c.depth)
        .outerjoin(walk, walk.c.id == OsUpdatePolicy.org_unit_id)
        .where(or_(OsUpdatePolicy.org_unit_id.is_(None), walk.c.depth.is_not(None)))
    ).all()
    # Nearest first; the default row (no depth) last.
    ordered = sorted(rows, key=lambda row: (row[1] is None, row[1] or 0))
    values = nearest_values((policy_row for policy_row, _depth in ordered), FIELDS, _typed)
    return replace(UpdatePolicy(), **values)


# The default row and those of a chain: built once (every Android sync asks; an empty chain binds
# an empty list, which matches nothing).
_POLICIES_ALONG = select(OsUpdatePolicy).where(
    or_(
        OsUpdatePolicy.org_unit_id.is_(None),
        OsUpdatePolicy.org_unit_id.in_(bindparam("chain", expanding=True)),
    )
)


def policy_along(session: Session, chain: Sequence[int]) -> UpdatePolicy:
    """`policy_for_unit` for a unit whose chain (the unit, then those above it, nearest first) the
    caller has read already, shared with the other settings it inherits (the Android sync): one
    statement for the policy rows of the chain and the default row, no walk of the tree."""
    rank = {unit_id: depth for depth, unit_id in enumerate(chain)}
    rows = session.scalars(_POLICIES_ALONG, {"chain": list(chain)}).all()
    # Nearest first; the default row last.
    default = len(rank)
    ordered = sorted(
        rows, key=lambda row: default if row.org_unit_id is None else rank.get(row.org_unit_id, default)
    )
    values = nearest_values(ordered, FIELDS, _typed)
    return replace(UpdatePolicy(), **values)


def set_update_policy(
    session: Session, actor: Actor, org_unit_id: int | None, **values: Any
) -> OsUpdatePolicy:
    """Create or change a unit's own policy (None: the fleet default); a value of None inherits.
    Raises ValueError naming the fields before anything is written. Audited."""
    problems = input_problems(values)
    if problems:
        raise ValueError("; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in sorted(problems.items())))
    row = set_own_values(session, OsUpdatePolicy, org_unit_id, values)
    row.updated_by = actor.name[:255]
    session.flush()
    record_event(
        session,
        actor,
        "os_update.policy_changed",
        "org_unit",
        org_unit_id,
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()},
    )
    return row
