"""All models, imported here so metadata is complete for Alembic and create_all."""

from mdm.ground.models.activation_lock import DeviceActivationLock
from mdm.ground.models.ade import (
    AdeAssignmentRule,
    AdeDevice,
    AdeEnrollment,
    AdeOrderSerial,
    AdeProfile,
    AdeProfileStatus,
    AdeRuleKind,
    AdeServerToken,
    AdeTokenKey,
)
from mdm.ground.models.agent_nonce import AgentRequestNonce
from mdm.ground.models.alerts import Alert, DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery
from mdm.ground.models.amapi import (
    AmapiDevice,
    AmapiEnrollmentToken,
    AmapiEnterprise,
    AmapiPolicy,
    AndroidMode,
)
from mdm.ground.models.amapi_ops import (
    AmapiCommandSend,
    AmapiNotification,
    AmapiNotificationOutcome,
    AmapiSendKind,
)
from mdm.ground.models.apps import (
    App,
    AppKind,
    AppPackage,
    AppRuleAction,
    BlockAction,
    DeviceAppState,
    UnitAppRule,
    UnitAppSettings,
)
from mdm.ground.models.audit import AuditEvent
from mdm.ground.models.base import Base
from mdm.ground.models.command import Command, CommandResult, CommandStatus, ForeignCommandResult
from mdm.ground.models.compliance import ComplianceFinding, CompliancePolicy, DeviceCompliance, Severity
from mdm.ground.models.continuity import (
    ContinuityPlan,
    ReadinessDelivery,
    ReadinessEvent,
    ReadinessState,
    SpareDevice,
    UnitReadinessState,
)
from mdm.ground.models.device import (
    Device,
    DeviceCertificate,
    DeviceMessage,
    EnrollmentState,
    IdentityPurpose,
)
from mdm.ground.models.enrollment import (
    AndroidProvisioning,
    CertificateAuthority,
    CertificatePurpose,
    ChallengePurpose,
    EnrollmentChallenge,
    EnrollmentToken,
    EnrollmentTokenUse,
    TokenPlatform,
)
from mdm.ground.models.health import ServiceHealth
from mdm.ground.models.incident import (
    Incident,
    IncidentCommand,
    IncidentLocation,
    IncidentPolicy,
    IncidentStatus,
    IncidentStep,
    LossKind,
    WipeCertificate,
)
from mdm.ground.models.inventory import (
    DeviceFacts,
    InstalledApp,
    InstalledCertificate,
    InstalledProfile,
    InventoryChange,
)
from mdm.ground.models.job_run import JobRun
from mdm.ground.models.mail import MailStatus, OutgoingMail, SmtpSettings, SmtpTls
from mdm.ground.models.org_unit import OrgUnit, OrgUnitKind, UnitType
from mdm.ground.models.os_update import DeviceOsUpdate, OsRelease, OsUpdatePolicy
from mdm.ground.models.outbox import OutboxEntry, OutboxTopic
from mdm.ground.models.policy_generation import POLICY_INPUT_TABLES, PolicyGeneration
from mdm.ground.models.profile import (
    DeviceProfileState,
    Profile,
    ProfileAssignment,
    ProfileRendering,
    ProfileVersion,
)
from mdm.ground.models.push import PushAttempt, PushCertificate
from mdm.ground.models.scheduler_lease import SchedulerLease
from mdm.ground.models.user import ApiToken, LoginThrottle, RecoveryCode, User, WebSession
from mdm.ground.models.vpp import VppAsset, VppAssignment, VppAssignmentState, VppEvent, VppToken

__all__ = [
    "POLICY_INPUT_TABLES",
    "AdeAssignmentRule",
    "AdeDevice",
    "AdeEnrollment",
    "AdeOrderSerial",
    "AdeProfile",
    "AdeProfileStatus",
    "AdeRuleKind",
    "AdeServerToken",
    "AdeTokenKey",
    "AgentRequestNonce",
    "Alert",
    "AmapiCommandSend",
    "AmapiDevice",
    "AmapiEnrollmentToken",
    "AmapiEnterprise",
    "AmapiNotification",
    "AmapiNotificationOutcome",
    "AmapiPolicy",
    "AmapiSendKind",
    "AndroidMode",
    "AndroidProvisioning",
    "ApiToken",
    "App",
    "AppKind",
    "AppPackage",
    "AppRuleAction",
    "AuditEvent",
    "Base",
    "BlockAction",
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
    "DeviceActivationLock",
    "DeviceAppState",
    "DeviceCertificate",
    "DeviceCompliance",
    "DeviceFacts",
    "DeviceMessage",
    "DeviceOsUpdate",
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
    "MailStatus",
    "OrgUnit",
    "OrgUnitKind",
    "OsRelease",
    "OsUpdatePolicy",
    "OutboxEntry",
    "OutboxTopic",
    "OutgoingMail",
    "PolicyGeneration",
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
    "SmtpSettings",
    "SmtpTls",
    "SpareDevice",
    "TokenPlatform",
    "UnitAppRule",
    "UnitAppSettings",
    "UnitReadinessState",
    "UnitType",
    "User",
    "VppAsset",
    "VppAssignment",
    "VppAssignmentState",
    "VppEvent",
    "VppToken",
    "WebSession",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "WipeCertificate",
]
