"""All models, imported here so metadata is complete for Alembic and create_all."""

from mdm.models.agent_nonce import AgentRequestNonce
from mdm.models.alerts import Alert, DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery
from mdm.models.audit import AuditEvent
from mdm.models.base import Base
from mdm.models.command import Command, CommandResult, CommandStatus, ForeignCommandResult
from mdm.models.compliance import ComplianceFinding, CompliancePolicy, DeviceCompliance, Severity
from mdm.models.continuity import (
    ContinuityPlan,
    ReadinessDelivery,
    ReadinessEvent,
    ReadinessState,
    SpareDevice,
    UnitReadinessState,
)
from mdm.models.device import (
    Device,
    DeviceCertificate,
    DeviceMessage,
    EnrollmentState,
    IdentityPurpose,
)
from mdm.models.enrollment import (
    AndroidProvisioning,
    CertificateAuthority,
    CertificatePurpose,
    ChallengePurpose,
    EnrollmentChallenge,
    EnrollmentToken,
    EnrollmentTokenUse,
    TokenPlatform,
)
from mdm.models.health import ServiceHealth
from mdm.models.incident import (
    Incident,
    IncidentCommand,
    IncidentLocation,
    IncidentPolicy,
    IncidentStatus,
    IncidentStep,
    LossKind,
    WipeCertificate,
)
from mdm.models.inventory import (
    DeviceFacts,
    InstalledApp,
    InstalledCertificate,
    InstalledProfile,
    InventoryChange,
)
from mdm.models.job_run import JobRun
from mdm.models.org_unit import OrgUnit, OrgUnitKind, UnitType
from mdm.models.outbox import OutboxEntry, OutboxTopic
from mdm.models.profile import (
    DeviceProfileState,
    Profile,
    ProfileAssignment,
    ProfileRendering,
    ProfileVersion,
)
from mdm.models.push import PushAttempt, PushCertificate
from mdm.models.scheduler_lease import SchedulerLease
from mdm.models.user import ApiToken, LoginThrottle, RecoveryCode, User, WebSession

__all__ = [
    "AgentRequestNonce",
    "Alert",
    "AndroidProvisioning",
    "ApiToken",
    "AuditEvent",
    "Base",
    "CertificateAuthority",
    "CertificatePurpose",
    "ChallengePurpose",
    "Command",
    "CommandResult",
    "CommandStatus",
    "ComplianceFinding",
    "CompliancePolicy",
    "ContinuityPlan",
    "DeliveryStatus",
    "Device",
    "DeviceCertificate",
    "DeviceCompliance",
    "DeviceFacts",
    "DeviceMessage",
    "DeviceProfileState",
    "EnrollmentChallenge",
    "EnrollmentState",
    "EnrollmentToken",
    "EnrollmentTokenUse",
    "ForeignCommandResult",
    "IdentityPurpose",
    "Incident",
    "IncidentCommand",
    "IncidentLocation",
    "IncidentPolicy",
    "IncidentStatus",
    "IncidentStep",
    "InstalledApp",
    "InstalledCertificate",
    "InstalledProfile",
    "InventoryChange",
    "JobRun",
    "LoginThrottle",
    "LossKind",
    "OrgUnit",
    "OrgUnitKind",
    "OutboxEntry",
    "OutboxTopic",
    "Profile",
    "ProfileAssignment",
    "ProfileRendering",
    "ProfileVersion",
    "PushAttempt",
    "PushCertificate",
    "ReadinessDelivery",
    "ReadinessEvent",
    "ReadinessState",
    "RecoveryCode",
    "SchedulerLease",
    "ServiceHealth",
    "Severity",
    "SpareDevice",
    "TokenPlatform",
    "UnitReadinessState",
    "UnitType",
    "User",
    "WebSession",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "WipeCertificate",
]
