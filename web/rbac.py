"""Roles, their explicit permission sets, and who is asking (a console user or an API token).

Permissions are granted, never inferred: a role has exactly the permissions listed here, and an
endpoint without a declared permission is refused (deny by default, see web.api.auth).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from commands.catalog import get_command_type
from commands.command_type import CommandType, Sender, UnknownCommand
from mdm.ground.audit import Actor


class Permission(StrEnum):
    # Read one's own identity and permissions (every role).
    SELF_READ = "self.read"
    DEVICE_READ = "device.read"
    DEVICE_WRITE = "device.write"  # asset tag and user of a device (admin only)
    COMMAND_READ = "command.read"
    # Any catalog command except erase (which needs the two-person wipe workflow).
    COMMAND_QUEUE = "command.queue"
    # Only the loss-and-theft commands of the hotline (lock, lost mode, location, sound).
    COMMAND_QUEUE_HOTLINE = "command.queue.hotline"
    COMMAND_CANCEL = "command.cancel"
    WIPE_REQUEST = "wipe.request"
    WIPE_APPROVE = "wipe.approve"
    # An administrator wipes alone with a mandatory reason (shown in red on the timeline).
    WIPE_BREAK_GLASS = "wipe.break_glass"
    # Hotline incidents: callers' names and numbers, so not for the dispatch systems.
    INCIDENT_READ = "incident.read"
    INCIDENT_WRITE = "incident.write"
    ORGUNIT_READ = "orgunit.read"
    ORGUNIT_WRITE = "orgunit.write"
    ENROLLMENT_READ = "enrollment.read"
    ENROLLMENT_WRITE = "enrollment.write"
    USER_READ = "user.read"
    USER_WRITE = "user.write"
    APITOKEN_READ = "apitoken.read"
    APITOKEN_WRITE = "apitoken.write"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    AUDIT_VERIFY = "audit.verify"
    SETTINGS_READ = "settings.read"
    SETTINGS_WRITE = "settings.write"
    READINESS_READ = "readiness.read"
    CONTINUITY_WRITE = "continuity.write"
    ALERT_READ = "alert.read"
    ALERT_ACK = "alert.ack"  # acknowledge an alert with a comment (audited)
    PROFILE_READ = "profile.read"
    PROFILE_WRITE = "profile.write"
    # See an escrowed Activation Lock bypass code after a wipe (administrators only; audited).
    ACTIVATION_LOCK_REVEAL = "activation_lock.reveal"
    # The app catalog, units' required and blocked apps, each device's app state (issue 21).
    APP_READ = "app.read"
    APP_WRITE = "app.write"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    APPROVER = "approver"
    AUDITOR = "auditor"
    DISPATCH = "dispatch"
    # A person in the dispatch center (指令員) who reads unit readiness in the console, nothing more.
    DISPATCHER = "dispatcher"


P = Permission

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    # The 24-hour hotline: find a device, lock it, put it in lost mode, ask for a wipe.
    Role.OPERATOR: frozenset(
        {
            P.SELF_READ,
            P.DEVICE_READ,
            P.COMMAND_READ,
            P.COMMAND_QUEUE_HOTLINE,
            P.COMMAND_CANCEL,
            P.WIPE_REQUEST,
            P.ALERT_READ,
            P.ORGUNIT_READ,
            P.READINESS_READ,
            P.INCIDENT_READ,
            P.INCIDENT_WRITE,
        }
    ),
    # Duty officer / CSIRT: decides on wipes asked for by someone else.
    Role.APPROVER: frozenset(
        {P.SELF_READ, P.DEVICE_READ, P.COMMAND_READ, P.WIPE_APPROVE, P.ORGUNIT_READ, P.INCIDENT_READ}
    ),
    # Reads everything that is not a secret, changes nothing.
    Role.AUDITOR: frozenset(
        {
            P.SELF_READ,
            P.DEVICE_READ,
            P.COMMAND_READ,
            P.ORGUNIT_READ,
            P.ENROLLMENT_READ,
            P.USER_READ,
            P.APITOKEN_READ,
            P.AUDIT_READ,
            P.AUDIT_EXPORT,
            P.AUDIT_VERIFY,
            P.ALERT_READ,
            P.SETTINGS_READ,
            P.READINESS_READ,
            P.INCIDENT_READ,
            P.PROFILE_READ,
            P.APP_READ,
        }
    ),
    # The dispatch center's systems: read readiness and device status, nothing else.
    Role.DISPATCH: frozenset({P.SELF_READ, P.DEVICE_READ, P.ORGUNIT_READ, P.READINESS_READ}),
    Role.DISPATCHER: frozenset({P.SELF_READ, P.ORGUNIT_READ, P.READINESS_READ}),
}

# People log in to the console; dispatch is a system and exists only as API tokens.
USER_ROLES: tuple[Role, ...] = (Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.DISPATCHER)
TOKEN_ROLES: tuple[Role, ...] = tuple(Role)
# The guideline asks for multi-factor authentication where a login can do the most harm.
TOTP_REQUIRED_ROLES: frozenset[Role] = frozenset({Role.ADMIN, Role.APPROVER})


def permissions_of(role: str) -> frozenset[Permission]:
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def totp_required(role: str) -> bool:
    return role in {r.value for r in TOTP_REQUIRED_ROLES}


@dataclass(frozen=True)
class Principal:
    """Who is making this request, and what they may see.

    `scope_unit_ids` is None for an unscoped principal, otherwise the ids of its org unit and
    every unit below it: nothing outside that set is visible or changeable.
    """

    kind: str  # "user" or "token"
    id: int
    name: str
    role: str
    org_unit_id: int | None = None
    scope_unit_ids: frozenset[int] | None = None
    source_ip: str | None = None
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    # The person a token answers for (its owner); None for a service account. A console user is
    # its own person (`id`).
    owner_user_id: int | None = None

    @property
    def person_id(self) -> int | None:
        return self.id if self.kind == "user" else self.owner_user_id

    @property
    def actor(self) -> Actor:
        return Actor(f"{self.kind}:{self.name}", self.role, self.source_ip, user_id=self.person_id)

    @property
    def scoped(self) -> bool:
        return self.scope_unit_ids is not None

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def can_all(self, permissions: Iterable[Permission]) -> bool:
        return all(p in self.permissions for p in permissions)

    def sees_unit(self, unit_id: int | None) -> bool:
        if self.scope_unit_ids is None:
            return True
        return unit_id is not None and unit_id in self.scope_unit_ids


# Who may send a command is the command's own declaration (commands.command_type.Sender); here
# only which permission each kind of sender needs. A two-person command has none: never by a route
# that queues by name.
SENDER_PERMISSION: dict[Sender, Permission] = {
    Sender.HOTLINE: Permission.COMMAND_QUEUE_HOTLINE,
    Sender.FLEET: Permission.COMMAND_QUEUE,
}


def command_permission(kind: CommandType) -> Permission | None:
    """The permission needed to queue (or cancel) this command; None: not by this route."""
    return SENDER_PERMISSION.get(kind.sent_by)


def may_send(principal: Principal, kind: CommandType) -> bool:
    needed = command_permission(kind)
    if needed is None:
        return False
    return principal.can(needed) or principal.can(Permission.COMMAND_QUEUE)


def may_send_named(principal: Principal, request_type: str) -> bool:
    """may_send for a request type by name; a type no longer in the catalog: no."""
    try:
        kind = get_command_type(request_type)
    except UnknownCommand:
        return False
    return may_send(principal, kind)
