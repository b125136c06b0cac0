"""All models, imported here so metadata is complete for Alembic and create_all."""

from mdm.models.audit import AuditEvent
from mdm.models.base import Base
from mdm.models.command import Command, CommandResult, CommandStatus
from mdm.models.device import Device, DeviceCertificate, DeviceMessage, EnrollmentState
from mdm.models.push import PushAttempt, PushCertificate

__all__ = [
    "AuditEvent",
    "Base",
    "Command",
    "CommandResult",
    "CommandStatus",
    "Device",
    "DeviceCertificate",
    "DeviceMessage",
    "EnrollmentState",
    "PushAttempt",
    "PushCertificate",
]
