"""Read-side queries shared by the API and the console, always limited to the principal's scope.

A scoped principal gets "not found" for anything outside its org-unit subtree, exactly as if
it did not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, func, or_, select, true
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from mdm.ground import clock
from mdm.ground.models import (
    Alert,
    ApiToken,
    AuditEvent,
    Command,
    CommandStatus,
    ComplianceFinding,
    Device,
    DeviceCompliance,
    DeviceFacts,
    EnrollmentState,
    EnrollmentToken,
    ForeignCommandResult,
    Incident,
    InstalledApp,
    InventoryChange,
    OrgUnit,
    Severity,
    User,
    Webhook,
    WebhookDelivery,
)
from mdm.services.device_search import most_recently_seen, substring_match
from web.rbac import Principal


@dataclass(frozen=True)
class PageResult:
    items: list[Any]
    page: int
    per_page: int
    total: int
    # True: more than `total` match (a search counts its matches up to SEARCH_COUNT_LIMIT only).
    total_capped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "total_capped": self.total_capped,
        }

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def capped_count(session: Session, stmt: Any, limit: int) -> tuple[int, bool]:
    """(how many rows `stmt` selects, counted up to `limit`; whether more than that do)."""
    rows = stmt.order_by(None).limit(limit + 1).subquery()
    counted = session.scalar(select(func.count()).select_from(rows)) or 0
    return min(counted, limit), counted > limit


def _paged(session: Session, stmt: Any, page: int, per_page: int) -> PageResult:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return PageResult(items, page, per_page, total)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- devices ------------------------------------------------------------------------------------


def device_scope(principal: Principal) -> ColumnElement[bool]:
    if principal.scope_unit_ids is None:
        return true()
    return Device.org_unit_id.in_(sorted(principal.scope_unit_ids))


def units_below(session: Session, unit_id: int) -> set[int]:
    from mdm.services.orgunits import subtree_ids

    return subtree_ids(session, unit_id)


# Compliance as the API and console show it: the worst open finding's severity, summarised.
COMPLIANT_SEVERITIES = (Severity.OK, Severity.INFO)
NONCOMPLIANT_SEVERITIES = (Severity.WARNING, Severity.CRITICAL)


@dataclass(frozen=True)
class ComplianceStatus:
    """Compliant (no finding worse than info), noncompliant, or unknown (never evaluated)."""

    label: str
    severity: str | None
    open_findings: int | None
    evaluated_at: datetime | None


# Never evaluated: how many findings are open is unknown too, not zero.
UNKNOWN_COMPLIANCE = ComplianceStatus("unknown", None, None, None)


def compliance_status(
    state: str | None, open_findings: int | None, evaluated_at: datetime | None
) -> ComplianceStatus:
    if state is None:
        return UNKNOWN_COMPLIANCE
    label = "compliant" if state in COMPLIANT_SEVERITIES else "noncompliant"
    return ComplianceStatus(label, state, open_findings or 0, evaluated_at)


def device_compliance_status(session: Session, device_id: int) -> ComplianceStatus:
    row = session.get(DeviceCompliance, device_id)
    if row is None:
        return UNKNOWN_COMPLIANCE
    return compliance_status(row.state, row.open_findings, row.evaluated_at)


class DeviceRow:
    """A device in a list, carrying its compliance (read in the same query, not one per row)."""

    def __init__(self, device: Device, compliance: ComplianceStatus) -> None:
        self._device = device
        self.compliance_status = compliance

    def __getattr__(self, name: str) -> Any:
        return getattr(self._device, name)


def compliance_condition(label: str) -> ColumnElement[bool]:
    """For a query already outer-joined to device_compliance."""
    if label == "unknown":
        return DeviceCompliance.device_id.is_(None)
    if label == "compliant":
        return DeviceCompliance.state.in_(COMPLIANT_SEVERITIES)
    if label == "noncompliant":
        return DeviceCompliance.state.in_(NONCOMPLIANT_SEVERITIES)
    raise ValueError(f"unknown compliance filter {label!r}")


def has_app(identifier: str) -> ColumnElement[bool]:
    """The device has this app (bundle id or package name) in its latest inventory."""
    return (
        select(InstalledApp.id)
        .where(InstalledApp.device_id == Device.id, InstalledApp.identifier == identifier)
        .exists()
    )


def search_devices(session: Session, principal: Principal, filters: Mapping[str, Any]) -> PageResult:
    conditions: list[ColumnElement[bool]] = [device_scope(principal)]
    if filters.get("unit_id") is not None:
        conditions.append(Device.org_unit_id.in_(sorted(units_below(session, filters["unit_id"]))))
    if filters.get("platform"):
        conditions.append(Device.platform == filters["platform"])
    if filters.get("status"):
        conditions.append(Device.enrollment_state == filters["status"])
    by_compliance = bool(filters.get("compliance") or filters.get("compliance_severity"))
    if filters.get("compliance"):
        conditions.append(compliance_condition(filters["compliance"]))
    if filters.get("compliance_severity"):
        conditions.append(DeviceCompliance.state == filters["compliance_severity"])
    if filters.get("app"):
        conditions.append(has_app(filters["app"]))
    if filters.get("seen_since") is not None:
        conditions.append(Device.last_seen_at >= filters["seen_since"])
    if filters.get("not_seen_since") is not None:
        conditions.append(or_(Device.last_seen_at.is_(None), Device.last_seen_at < filters["not_seen_since"]))
    if filters.get("q"):
        # lower(column) LIKE: what migration 0014's trigram indexes answer on PostgreSQL.
        conditions.append(substring_match(filters["q"]))
    order = {
        "id": (Device.id,),
        "-id": (Device.id.desc(),),
        "last_seen": (Device.last_seen_at.is_(None), Device.last_seen_at, Device.id),
        "-last_seen": most_recently_seen(),
        "name": (Device.device_name, Device.id),
    }[filters.get("sort") or "id"]
    page, per_page = filters.get("page", 1), filters.get("per_page", 50)
    columns = (Device, DeviceCompliance.state, DeviceCompliance.open_findings, DeviceCompliance.evaluated_at)
    stmt = (
        select(*columns)
        .outerjoin(DeviceCompliance, DeviceCompliance.device_id == Device.id)
        .where(*conditions)
        .order_by(*order)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    capped = False
    if filters.get("q"):
        rows, total, capped = _searched(session, stmt, conditions, order, page, per_page)
    else:
        # A plain list is a long one: the page comes off ix_devices_last_seen_order, the count
        # off devices alone (no join unless a compliance filter needs it).
        rows = list(session.execute(stmt).all())
        total = _count_devices(session, conditions, by_compliance)
    items = [
        DeviceRow(device, compliance_status(state, open_count, evaluated_at))
        for device, state, open_count, evaluated_at in rows
    ]
    # The page's units in one query: a list names each device's unit, and a lazy load per row
    # was 35 of the console list's 43 statements at 100,000 devices.
    unit_ids = sorted({row[0].org_unit_id for row in rows if row[0].org_unit_id is not None})
    if unit_ids:
        units = {u.id: u for u in session.scalars(select(OrgUnit).where(OrgUnit.id.in_(unit_ids)))}
        for row in rows:
            set_committed_value(row[0], "org_unit", units.get(row[0].org_unit_id))
    return PageResult(items, page, per_page, total, capped)


# A search counts its matches up to this many, then says "more than" (a search for "1" matches
# the whole fleet: counting 100,000 matches, and sorting them for page 1, took 1.5 to 4 s).
SEARCH_COUNT_LIMIT = 1000


def _searched(
    session: Session,
    stmt: Any,
    conditions: list[ColumnElement[bool]],
    order: tuple[Any, ...],
    page: int,
    per_page: int,
) -> tuple[list[Any], int, bool]:
    """(the page's rows, how many match, whether more than that match) of a device search.

    One statement for a search that finds up to SEARCH_COUNT_LIMIT devices (what people search
    for: a tag, a serial, a name): the matching ids are read once, through the trigram indexes
    of migration 0014 (`hits`, at most the limit + 1 of them), then counted and the page cut
    from them. A broader search (more than the limit match) gets its page in a second statement
    that walks the list's order and stops at the page, with the total shown as "more than".
    """
    hits = (
        stmt.with_only_columns(Device.id)
        .order_by(None)
        .limit(SEARCH_COUNT_LIMIT + 1)
        .offset(None)
        .cte("search_hits")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    found = select(func.count()).select_from(hits).scalar_subquery()
    page_of_hits = stmt.where(Device.id.in_(select(hits.c.id))).add_columns(found.label("found"))
    rows = session.execute(page_of_hits).all()
    if rows:
        total = int(rows[0][-1])
    elif page == 1:
        total = 0  # page 1 of the hits is empty: there are none
    else:
        # Past the last page: the count alone, bounded the same way.
        total = int(session.scalar(select(found)) or 0)
    if total <= SEARCH_COUNT_LIMIT:
        return [row[:-1] for row in rows], total, False
    return [tuple(row) for row in session.execute(stmt).all()], SEARCH_COUNT_LIMIT, True


def _count_devices(session: Session, conditions: list[ColumnElement[bool]], by_compliance: bool) -> int:
    found = select(Device)
    if by_compliance:
        found = found.outerjoin(DeviceCompliance, DeviceCompliance.device_id == Device.id)
    stmt = found.where(*conditions).with_only_columns(func.count(Device.id), maintain_column_froms=True)
    return session.scalar(stmt) or 0


def visible_device(session: Session, principal: Principal, device_id: int) -> Device | None:
    device = session.get(Device, device_id)
    if device is None or not principal.sees_unit(device.org_unit_id):
        return None
    return device


def visible_devices(session: Session, principal: Principal, ids: list[int]) -> list[Device]:
    if not ids:
        return []
    return list(
        session.scalars(select(Device).where(Device.id.in_(ids), device_scope(principal)).order_by(Device.id))
    )


def pending_count(session: Session, device: Device) -> int:
    return (
        session.scalar(
            select(func.count(Command.id)).where(
                Command.device_id == device.id, Command.status.in_(CommandStatus.PENDING)
            )
        )
        or 0
    )


# -- commands -----------------------------------------------------------------------------------


def search_commands(session: Session, principal: Principal, filters: Mapping[str, Any]) -> PageResult:
    stmt = select(Command).join(Device, Command.device_id == Device.id).where(device_scope(principal))
    if filters.get("device_id") is not None:
        stmt = stmt.where(Command.device_id == filters["device_id"])
    if filters.get("status"):
        stmt = stmt.where(Command.status == filters["status"])
    if filters.get("request_type"):
        stmt = stmt.where(Command.request_type == filters["request_type"])
    stmt = stmt.order_by(Command.id.desc())
    return _paged(session, stmt, filters.get("page", 1), filters.get("per_page", 50))


def device_commands(session: Session, device: Device, limit: int = 100) -> list[Command]:
    return list(
        session.scalars(
            select(Command).where(Command.device_id == device.id).order_by(Command.id.desc()).limit(limit)
        )
    )


def _foreign_results(device: Device) -> Any:
    return (
        select(ForeignCommandResult)
        .where(ForeignCommandResult.device_id == device.id)
        .order_by(ForeignCommandResult.received_at.desc(), ForeignCommandResult.id.desc())
    )


def device_foreign_results(session: Session, device: Device, limit: int = 100) -> list[ForeignCommandResult]:
    """Answers to commands Hikeshi never queued (another MDM's, from before the migration)."""
    return list(session.scalars(_foreign_results(device).limit(limit)))


def search_foreign_results(session: Session, device: Device, page: int, per_page: int) -> PageResult:
    return _paged(session, _foreign_results(device), page, per_page)


def visible_command(session: Session, principal: Principal, command_uuid: str) -> Command | None:
    command = session.scalars(select(Command).where(Command.uuid == command_uuid)).first()
    if command is None:
        return None
    device = session.get(Device, command.device_id)
    if device is None or not principal.sees_unit(device.org_unit_id):
        return None
    return command


# -- org units, tokens, users -------------------------------------------------------------------


def visible_units(session: Session, principal: Principal) -> list[OrgUnit]:
    from mdm.services.orgunits import list_units

    return [u for u in list_units(session) if principal.sees_unit(u.id)]


def visible_unit(session: Session, principal: Principal, unit_id: int) -> OrgUnit | None:
    unit = session.get(OrgUnit, unit_id)
    if unit is None or not principal.sees_unit(unit.id):
        return None
    return unit


def visible_enrollment_token(session: Session, principal: Principal, token_id: int) -> EnrollmentToken | None:
    token = session.get(EnrollmentToken, token_id)
    if token is None or not principal.sees_unit(token.org_unit_id):
        return None
    return token


def visible_users(session: Session, principal: Principal) -> list[User]:
    stmt = select(User).order_by(User.username)
    if principal.scope_unit_ids is not None:
        stmt = stmt.where(User.org_unit_id.in_(sorted(principal.scope_unit_ids)))
    return list(session.scalars(stmt))


def visible_user(session: Session, principal: Principal, user_id: int) -> User | None:
    user = session.get(User, user_id)
    if user is None or not principal.sees_unit(user.org_unit_id):
        return None
    return user


def visible_api_tokens(session: Session, principal: Principal) -> list[ApiToken]:
    stmt = select(ApiToken).order_by(ApiToken.id.desc())
    if principal.scope_unit_ids is not None:
        stmt = stmt.where(ApiToken.org_unit_id.in_(sorted(principal.scope_unit_ids)))
    return list(session.scalars(stmt))


def visible_api_token(session: Session, principal: Principal, public_id: str) -> ApiToken | None:
    token = session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).first()
    if token is None or not principal.sees_unit(token.org_unit_id):
        return None
    return token


# -- audit --------------------------------------------------------------------------------------


def audit_scope(principal: Principal) -> ColumnElement[bool]:
    """Events about things inside the scope: its devices, their commands, units, tokens, users."""
    if principal.scope_unit_ids is None:
        return true()
    units = sorted(principal.scope_unit_ids)
    device_ids = select(Device.id).where(Device.org_unit_id.in_(units))
    as_text = lambda column: cast(column, String)  # noqa: E731
    return or_(
        and_(
            AuditEvent.target_type == "device",
            AuditEvent.target_id.in_(select(as_text(Device.id)).where(Device.org_unit_id.in_(units))),
        ),
        and_(
            AuditEvent.target_type == "command",
            AuditEvent.target_id.in_(select(Command.uuid).where(Command.device_id.in_(device_ids))),
        ),
        and_(AuditEvent.target_type == "org_unit", AuditEvent.target_id.in_([str(u) for u in units])),
        and_(
            AuditEvent.target_type == "enrollment_token",
            AuditEvent.target_id.in_(
                select(as_text(EnrollmentToken.id)).where(EnrollmentToken.org_unit_id.in_(units))
            ),
        ),
        and_(
            AuditEvent.target_type == "user",
            AuditEvent.target_id.in_(select(as_text(User.id)).where(User.org_unit_id.in_(units))),
        ),
        and_(
            AuditEvent.target_type == "incident",
            AuditEvent.target_id.in_(
                select(as_text(Incident.id)).where(
                    or_(Incident.org_unit_id.in_(units), Incident.device_id.in_(device_ids))
                )
            ),
        ),
        and_(
            AuditEvent.target_type == "api_token",
            AuditEvent.target_id.in_(select(ApiToken.public_id).where(ApiToken.org_unit_id.in_(units))),
        ),
    )


def audit_statement(principal: Principal, filters: Mapping[str, Any]) -> Any:
    stmt = select(AuditEvent).where(audit_scope(principal))
    action = filters.get("action")
    if action:
        if action.endswith("."):
            stmt = stmt.where(AuditEvent.action.startswith(action, autoescape=True))
        else:
            stmt = stmt.where(AuditEvent.action == action)
    if filters.get("actor"):
        stmt = stmt.where(AuditEvent.actor == filters["actor"])
    if filters.get("target_type"):
        stmt = stmt.where(AuditEvent.target_type == filters["target_type"])
    if filters.get("target_id"):
        stmt = stmt.where(AuditEvent.target_id == filters["target_id"])
    if filters.get("since") is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= filters["since"])
    if filters.get("until") is not None:
        stmt = stmt.where(AuditEvent.occurred_at <= filters["until"])
    return stmt


# The audit trail grows with every change, for years: a list counts its matches up to this many,
# then says "more than" (counting all of them read the whole trail on every page).
AUDIT_COUNT_LIMIT = 10_000


def search_audit(session: Session, principal: Principal, filters: Mapping[str, Any]) -> PageResult:
    stmt = audit_statement(principal, filters).order_by(AuditEvent.id.desc())
    page, per_page = filters.get("page", 1), filters.get("per_page", 50)
    total, capped = capped_count(session, stmt.with_only_columns(AuditEvent.id), AUDIT_COUNT_LIMIT)
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return PageResult(items, page, per_page, total, capped)


# -- dashboard ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardCounts:
    enrolled: int
    seen_last_hour: int
    # In lost mode as the device last confirmed it (lost_mode_condition).
    lost: int
    pending_commands: int
    push_errors: int
    # Devices whose worst open compliance finding is a warning or worse; alerts not acknowledged.
    noncompliant: int
    open_alerts: int


def dashboard_counts(session: Session, principal: Principal) -> DashboardCounts:
    scope = device_scope(principal)
    hour_ago: datetime = clock.now() - timedelta(hours=1)
    enrolled = session.scalar(
        select(func.count(Device.id)).where(scope, Device.enrollment_state == EnrollmentState.ENROLLED)
    )
    seen = session.scalar(select(func.count(Device.id)).where(scope, Device.last_seen_at >= hour_ago))
    pending = session.scalar(
        select(func.count(Command.id))
        .join(Device, Command.device_id == Device.id)
        .where(scope, Command.status.in_(CommandStatus.PENDING))
    )
    push_errors = session.scalar(
        select(func.count(Device.id)).where(
            scope, Device.enrollment_state == EnrollmentState.ENROLLED, Device.push_error.is_not(None)
        )
    )
    noncompliant = session.scalar(
        select(func.count(Device.id))
        .join(DeviceCompliance, DeviceCompliance.device_id == Device.id)
        .where(scope, DeviceCompliance.state.in_(NONCOMPLIANT_SEVERITIES))
    )
    open_alerts = session.scalar(
        select(func.count(Alert.id)).where(alert_scope(principal), Alert.acknowledged_at.is_(None))
    )
    lost = session.scalar(
        lost_mode_devices(select(func.count(Device.id)).select_from(Device)).where(
            scope, Device.enrollment_state.in_((EnrollmentState.ENROLLED, EnrollmentState.PENDING))
        )
    )
    return DashboardCounts(
        enrolled=enrolled or 0,
        seen_last_hour=seen or 0,
        lost=lost or 0,
        pending_commands=pending or 0,
        push_errors=push_errors or 0,
        noncompliant=noncompliant or 0,
        open_alerts=open_alerts or 0,
    )


LOST_MODE_COMMANDS = ("EnableLostMode", "DisableLostMode")


def lost_mode_devices(stmt: Any) -> Any:
    """`stmt` (selecting from devices) narrowed to the devices in lost mode as the device itself
    last confirmed it: the newer of its last acknowledged EnableLostMode/DisableLostMode (the
    Android agent's START/STOP_LOST_MODE acknowledge under these names) and its last
    DeviceInformation answer of IsMDMLostModeEnabled. A lost-mode command that was only sent
    counts for nothing."""
    last_ack = (
        select(Command.device_id, func.max(Command.id).label("command_id"))
        .where(Command.status == CommandStatus.ACKNOWLEDGED, Command.request_type.in_(LOST_MODE_COMMANDS))
        .group_by(Command.device_id)
        .subquery()
    )
    last = aliased(Command)
    reported = and_(
        DeviceFacts.is_lost_mode_enabled.is_not(None), DeviceFacts.device_information_at.is_not(None)
    )
    command_is_newer = or_(~reported, last.acknowledged_at >= DeviceFacts.device_information_at)
    by_command = and_(last.id.is_not(None), command_is_newer, last.request_type == "EnableLostMode")
    by_report = and_(
        reported,
        or_(last.id.is_(None), last.acknowledged_at < DeviceFacts.device_information_at),
        DeviceFacts.is_lost_mode_enabled.is_(True),
    )
    return (
        stmt.outerjoin(last_ack, last_ack.c.device_id == Device.id)
        .outerjoin(last, last.id == last_ack.c.command_id)
        .outerjoin(DeviceFacts, DeviceFacts.device_id == Device.id)
        .where(or_(by_command, by_report))
    )


# -- inventory ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppOnDevice:
    """One installed app, marked when the device's app policy does not permit it."""

    app: InstalledApp
    unauthorized: bool
    reason: str | None  # "blocked" / "not_allowed" (policy), "finding" (open finding only)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def device_apps(session: Session, device: Device) -> list[AppOnDevice]:
    """The device's apps; unauthorized by its current app policy (the allow and block lists of its
    assigned profiles), or by an open unauthorized-app finding not yet re-evaluated."""
    from mdm.services.compliance.sources import allowed_apps_for

    policy = allowed_apps_for(session, device)
    flagged = set(
        session.scalars(
            select(ComplianceFinding.subject).where(
                ComplianceFinding.device_id == device.id,
                ComplianceFinding.rule == UNAUTHORIZED_APP_RULE,
                ComplianceFinding.closed_at.is_(None),
            )
        )
    )
    apps = session.scalars(
        select(InstalledApp).where(InstalledApp.device_id == device.id).order_by(InstalledApp.identifier)
    )
    result = []
    for app in apps:
        reason = None
        if policy is not None and not policy.permits(app.identifier):
            reason = policy.reason(app.identifier)
        elif app.identifier in flagged:
            reason = "finding"
        result.append(AppOnDevice(app, reason is not None, reason))
    return result


def device_changes(session: Session, device_id: int, filters: Mapping[str, Any]) -> PageResult:
    """The device's inventory history (what changed, when), newest first."""
    stmt = select(InventoryChange).where(InventoryChange.device_id == device_id)
    if filters.get("kind"):
        stmt = stmt.where(InventoryChange.kind == filters["kind"])
    if filters.get("since") is not None:
        stmt = stmt.where(InventoryChange.occurred_at >= filters["since"])
    stmt = stmt.order_by(InventoryChange.occurred_at.desc(), InventoryChange.id.desc())
    return _paged(session, stmt, filters.get("page", 1), filters.get("per_page", 50))


def device_findings(session: Session, device_id: int, state: str = "all") -> list[ComplianceFinding]:
    """Open ones first, then closed ones, each newest first."""
    stmt = select(ComplianceFinding).where(ComplianceFinding.device_id == device_id)
    if state == "open":
        stmt = stmt.where(ComplianceFinding.closed_at.is_(None))
    elif state == "closed":
        stmt = stmt.where(ComplianceFinding.closed_at.is_not(None))
    stmt = stmt.order_by(ComplianceFinding.closed_at.is_not(None), ComplianceFinding.id.desc()).limit(500)
    return list(session.scalars(stmt))


UNAUTHORIZED_APP_RULE = "unauthorized_app"


@dataclass(frozen=True)
class AppReportRow:
    identifier: str
    name: str | None
    devices: int
    unauthorized_devices: int


def apps_report(session: Session, principal: Principal, filters: Mapping[str, Any]) -> PageResult:
    """Every app on the visible devices, with how many have it and on how many it is unauthorized
    (an open unauthorized-app finding: what compliance evaluation last decided)."""
    unauthorized = (
        select(ComplianceFinding.device_id, ComplianceFinding.subject)
        .where(ComplianceFinding.rule == UNAUTHORIZED_APP_RULE, ComplianceFinding.closed_at.is_(None))
        .distinct()
        .subquery()
    )
    devices = func.count(func.distinct(InstalledApp.device_id))
    flagged = func.count(func.distinct(unauthorized.c.device_id))
    stmt = (
        select(InstalledApp.identifier, func.max(InstalledApp.name), devices, flagged)
        .join(Device, Device.id == InstalledApp.device_id)
        .outerjoin(
            unauthorized,
            and_(
                unauthorized.c.device_id == InstalledApp.device_id,
                unauthorized.c.subject == InstalledApp.identifier,
            ),
        )
        .where(device_scope(principal))
        .group_by(InstalledApp.identifier)
    )
    if filters.get("unit_id") is not None:
        stmt = stmt.where(Device.org_unit_id.in_(sorted(units_below(session, filters["unit_id"]))))
    if filters.get("platform"):
        stmt = stmt.where(Device.platform == filters["platform"])
    if filters.get("q"):
        pattern = _like(filters["q"])
        stmt = stmt.where(
            or_(
                InstalledApp.identifier.ilike(pattern, escape="\\"),
                InstalledApp.name.ilike(pattern, escape="\\"),
            )
        )
    if filters.get("unauthorized"):
        stmt = stmt.having(flagged > 0)
    order = {
        "-devices": (devices.desc(), InstalledApp.identifier),
        "identifier": (InstalledApp.identifier,),
        "-unauthorized": (flagged.desc(), devices.desc(), InstalledApp.identifier),
    }[filters.get("sort") or "-devices"]
    page, per_page = filters.get("page", 1), filters.get("per_page", 50)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.execute(stmt.order_by(*order).limit(per_page).offset((page - 1) * per_page)).all()
    return PageResult([AppReportRow(*row) for row in rows], page, per_page, total)


# -- alerts -------------------------------------------------------------------------------------

ALERT_STATES = ("open", "acknowledged")


def alert_scope(principal: Principal) -> ColumnElement[bool]:
    """Alerts of the principal's units; fleet-wide ones (no unit) only for unscoped principals."""
    if principal.scope_unit_ids is None:
        return true()
    return Alert.org_unit_id.in_(sorted(principal.scope_unit_ids))


def search_alerts(session: Session, principal: Principal, filters: Mapping[str, Any]) -> PageResult:
    stmt = select(Alert).where(alert_scope(principal))
    if filters.get("state") == "open":
        stmt = stmt.where(Alert.acknowledged_at.is_(None))
    elif filters.get("state") == "acknowledged":
        stmt = stmt.where(Alert.acknowledged_at.is_not(None))
    if filters.get("severity"):
        stmt = stmt.where(Alert.severity == filters["severity"])
    if filters.get("unit_id") is not None:
        stmt = stmt.where(Alert.org_unit_id.in_(sorted(units_below(session, filters["unit_id"]))))
    if filters.get("device_id") is not None:
        stmt = stmt.where(Alert.device_id == filters["device_id"])
    kind = filters.get("kind")
    if kind:
        if kind.endswith("."):
            stmt = stmt.where(Alert.kind.startswith(kind, autoescape=True))
        else:
            stmt = stmt.where(Alert.kind == kind)
    stmt = stmt.order_by(Alert.id.desc())
    return _paged(session, stmt, filters.get("page", 1), filters.get("per_page", 50))


def visible_alert(session: Session, principal: Principal, alert_id: int) -> Alert | None:
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    if principal.scope_unit_ids is not None and alert.org_unit_id not in principal.scope_unit_ids:
        return None
    return alert


def alert_deliveries(session: Session, alert: Alert) -> list[tuple[WebhookDelivery, str]]:
    """The alert's webhook deliveries (with their attempt log) and each webhook's name."""
    rows = session.execute(
        select(WebhookDelivery, Webhook.name)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.alert_id == alert.id)
        .order_by(WebhookDelivery.id)
    ).all()
    return [(delivery, name) for delivery, name in rows]
