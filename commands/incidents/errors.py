"""Domain errors of the hotline workflow; each names the field the caller should point at."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class IncidentError(ValueError):
    """A hotline action refused by a domain rule; `field` names what to fix (→ a 4xx)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field
        self.fields: dict[str, Any] = {field: [message]}


class IncidentInputError(IncidentError):
    """The incident report failed validation; `fields` maps each bad field to its messages."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        names = ", ".join(sorted(fields))
        super().__init__(f"invalid incident report: {names}", field=sorted(fields)[0] if fields else "report")
        self.fields = dict(fields)


class IncidentStateError(IncidentError):
    """The incident's status does not allow this action."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="status")


class SamePersonError(IncidentError):
    """Two-person rule: the approver of a wipe must not be the person who requested it."""

    def __init__(self, requester: str) -> None:
        super().__init__(
            f"the wipe was requested by {requester}; a different person must approve it", field="approver"
        )


class PersonRequired(IncidentError):
    """Two-person rule: only a person (a console user or a token's owner) may request, approve,
    reject or break glass; a service account or an unattributed token is nobody."""

    def __init__(self, action: str) -> None:
        super().__init__(
            f"only a person may {action}: this caller is a service account or a token without an owner",
            field="actor",
        )


class RequesterUnknown(IncidentError):
    """The wipe was requested by nobody we can name as a person: no one can be the second one."""

    def __init__(self) -> None:
        super().__init__(
            "the person who requested this wipe is not known (requested before people were recorded, "
            "or their account was removed): reject it and request it again",
            field="approver",
        )


class ReasonRequired(IncidentError):
    def __init__(self, action: str) -> None:
        super().__init__(f"a reason is required to {action}", field="reason")


class BreakGlassNotAllowed(IncidentError):
    def __init__(self, role: str) -> None:
        super().__init__(f"only an administrator may break glass (actor role is {role})", field="actor")
