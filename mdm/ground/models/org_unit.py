"""The organisation tree of a fire department: 消防本部 → 消防署 → 出張所 → 隊."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mdm.ground import clock
from mdm.ground.models.base import Base


class OrgUnitKind:
    HQ = "hq"  # 消防本部
    STATION = "station"  # 消防署
    BRANCH = "branch"  # 出張所
    UNIT = "unit"  # 隊 (company)

    ALL = (HQ, STATION, BRANCH, UNIT)
    LABELS = {
        HQ: ("消防本部", "Fire HQ"),
        STATION: ("消防署", "Fire station"),
        BRANCH: ("出張所", "Branch office"),
        UNIT: ("隊", "Unit"),
    }
    # Which kinds a node of each kind may hang under (None: a root). A 隊 may belong to the HQ
    # itself (本部指揮隊), to a station or to a branch.
    ALLOWED_PARENTS: dict[str, tuple[str | None, ...]] = {
        HQ: (None,),
        STATION: (HQ,),
        BRANCH: (STATION,),
        UNIT: (HQ, STATION, BRANCH),
    }


class UnitType:
    """What a 隊 does; continuity plans count working tablets per kind of unit."""

    LABELS = {
        "ambulance": ("救急隊", "Ambulance"),
        "pump": ("ポンプ隊", "Pump company"),
        "command": ("指揮隊", "Command unit"),
        "rescue": ("救助隊", "Rescue company"),
        "ladder": ("はしご隊", "Ladder company"),
        "hazmat": ("特殊災害対応隊", "Hazmat unit"),
        "water_rescue": ("水難救助隊", "Water rescue unit"),
        "support": ("後方支援隊", "Support unit"),
        "other": ("その他", "Other"),
    }
    ALL = tuple(LABELS)


class OrgUnit(Base):
    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    unit_type: Mapped[str | None] = mapped_column(String(32))
    name_ja: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str | None] = mapped_column(String(100))
    # Short code administrators type (CLI --unit, dispatch system mappings); optional, unique.
    code: Mapped[str | None] = mapped_column(String(32), unique=True)
    # What a lost tablet of this unit shows on its lock screen (None: the unit above decides;
    # commands.incidents.lock_text reads them down the tree 隊 → 署 → 本部).
    lock_message: Mapped[str | None] = mapped_column(String(500))
    lock_phone: Mapped[str | None] = mapped_column(String(32))
    # Activation Lock on this unit's supervised tablets (ActivationLockAllowedWhileSupervised);
    # None: as the parent unit says (the top of the tree without a value: not allowed, Apple's default).
    activation_lock_allowed: Mapped[bool | None] = mapped_column(default=None)
    # Whether the unit's Android tablets report their location with every inventory (the agent
    # policy's `reporting.location`); None: as the parent unit says (the top of the tree without a
    # value: not reported). A LOCATE command asks for one fix regardless.
    android_location_reporting: Mapped[bool | None] = mapped_column(default=None)
    # How the unit's Android tablets are managed: 'agent' (Hikeshi's agent, closed networks) or
    # 'amapi' (Google's Android Management API); None: as the parent unit says (the top of the
    # tree without a value: 'agent'). mdm/services/amapi/mode.py resolves it.
    android_mode: Mapped[str | None] = mapped_column(String(8), default=None)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[OrgUnit]] = relationship(back_populates="parent", order_by="OrgUnit.id")

    @property
    def display_name(self) -> str:
        return f"{self.name_ja} ({self.name_en})" if self.name_en else self.name_ja

    def __repr__(self) -> str:
        return f"<OrgUnit {self.id} {self.kind} {self.code or self.name_ja}>"
