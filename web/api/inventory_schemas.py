"""Schemas of the inventory, compliance, apps-report and alert endpoints."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from web.api.schemas import CommandSchema, Id, PageQuerySchema, PageSchema, Text, When
from web.queries import ALERT_STATES

SEVERITIES = ("ok", "info", "warning", "critical")
FINDING_STATES = ("open", "closed", "all")
DELIVERY_STATES = ("pending", "delivered", "failed")


# -- inventory ----------------------------------------------------------------------------------


class DeviceFactsSchema(Schema):
    """The latest DeviceInformation and SecurityInfo answers; every value null until reported."""

    device_id = fields.Integer(required=True)
    imei = fields.String(allow_none=True, required=True)
    meid = fields.String(allow_none=True, required=True)
    iccid = fields.String(allow_none=True, required=True)
    wifi_mac = fields.String(allow_none=True, required=True)
    bluetooth_mac = fields.String(allow_none=True, required=True)
    battery_level = fields.Float(allow_none=True, required=True, metadata={"description": "0.0 – 1.0"})
    device_capacity_gb = fields.Float(allow_none=True, required=True)
    available_capacity_gb = fields.Float(allow_none=True, required=True)
    is_supervised = fields.Boolean(allow_none=True, required=True)
    is_activation_lock_enabled = fields.Boolean(allow_none=True, required=True)
    is_find_my_enabled = fields.Boolean(allow_none=True, required=True)
    is_cloud_backup_enabled = fields.Boolean(allow_none=True, required=True)
    is_lost_mode_enabled = fields.Boolean(allow_none=True, required=True)
    is_roaming = fields.Boolean(allow_none=True, required=True)
    cellular_technology = fields.Integer(allow_none=True, required=True)
    time_zone = fields.String(allow_none=True, required=True)
    supplemental_build_version = fields.String(allow_none=True, required=True)
    passcode_present = fields.Boolean(allow_none=True, required=True)
    passcode_compliant = fields.Boolean(allow_none=True, required=True)
    passcode_compliant_with_profiles = fields.Boolean(allow_none=True, required=True)
    hardware_encryption_caps = fields.Integer(allow_none=True, required=True)
    filevault_enabled = fields.Boolean(
        allow_none=True, required=True, metadata={"description": "Mac: FDE_Enabled"}
    )
    filevault_personal_recovery_key = fields.Boolean(allow_none=True, required=True)
    filevault_institutional_recovery_key = fields.Boolean(allow_none=True, required=True)
    firewall_enabled = fields.Boolean(
        allow_none=True, required=True, metadata={"description": "Mac application firewall"}
    )
    firewall_block_all_incoming = fields.Boolean(allow_none=True, required=True)
    firewall_stealth_mode = fields.Boolean(allow_none=True, required=True)
    sip_enabled = fields.Boolean(
        allow_none=True, required=True, metadata={"description": "Mac: System Integrity Protection"}
    )
    android_security_patch = fields.String(allow_none=True, required=True)
    android_device_owner = fields.Boolean(allow_none=True, required=True)
    device_information_at = fields.DateTime(allow_none=True, required=True)
    security_info_at = fields.DateTime(allow_none=True, required=True)
    applications_at = fields.DateTime(allow_none=True, required=True)
    profiles_at = fields.DateTime(allow_none=True, required=True)
    certificates_at = fields.DateTime(allow_none=True, required=True)
    raw_device_information = fields.Dict(
        required=True, metadata={"description": "every key the device sent, modelled or not"}
    )
    raw_security_info = fields.Dict(required=True)
    device_information_reported_at = fields.Dict(
        allow_none=True,
        required=True,
        metadata={"description": "when each key of raw_device_information was last reported"},
    )


class InstalledAppSchema(Schema):
    identifier = fields.String(required=True, metadata={"description": "bundle id or package name"})
    name = fields.String(allow_none=True, required=True)
    version = fields.String(allow_none=True, required=True)
    short_version = fields.String(allow_none=True, required=True)
    bundle_size = fields.Integer(allow_none=True, required=True)
    is_managed = fields.Boolean(allow_none=True, required=True, metadata={"description": "null: unknown"})
    first_seen_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(
        required=True,
        metadata={"description": "when the device last reported a change of its name, version or size"},
    )
    unauthorized = fields.Boolean(
        required=True, metadata={"description": "not permitted by the device's app policy"}
    )
    unauthorized_reason = fields.String(
        attribute="reason",
        allow_none=True,
        required=True,
        metadata={
            "enum": ["blocked", "not_allowed", "finding", None],
            "description": "blocked / not_allowed by its profiles' lists; finding: an open finding not "
            "yet re-evaluated",
        },
    )


class InstalledProfileSchema(Schema):
    identifier = fields.String(required=True)
    payload_uuid = fields.String(allow_none=True, required=True)
    display_name = fields.String(allow_none=True, required=True)
    organization = fields.String(allow_none=True, required=True)
    payload_version = fields.Integer(allow_none=True, required=True)
    is_managed = fields.Boolean(allow_none=True, required=True)
    is_encrypted = fields.Boolean(allow_none=True, required=True)
    removal_disallowed = fields.Boolean(allow_none=True, required=True)
    first_seen_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class InstalledCertificateSchema(Schema):
    fingerprint_sha256 = fields.String(required=True)
    common_name = fields.String(allow_none=True, required=True)
    subject = fields.String(allow_none=True, required=True)
    issuer = fields.String(allow_none=True, required=True)
    not_after = fields.DateTime(allow_none=True, required=True, metadata={"description": "expiry"})
    is_identity = fields.Boolean(required=True)
    first_seen_at = fields.DateTime(required=True)


class HistoryQuerySchema(PageQuerySchema):
    kind = Text(
        validate=validate.Length(min=1, max=32),
        metadata={"description": "os_upgraded, app_installed, app_removed, battery_low, ..."},
    )
    since = When(metadata={"description": "changes at or after this time"})


class InventoryChangeSchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    subject = fields.String(required=True)
    old_value = fields.String(allow_none=True, required=True)
    new_value = fields.String(allow_none=True, required=True)
    occurred_at = fields.DateTime(required=True)


class InventoryChangePageSchema(PageSchema):
    items = fields.List(fields.Nested(InventoryChangeSchema), required=True)


class RefreshResultSchema(Schema):
    commands = fields.List(
        fields.Nested(CommandSchema),
        required=True,
        metadata={"description": "one per inventory kind; one still waiting is reused, not doubled"},
    )


# -- compliance ---------------------------------------------------------------------------------


class FindingQuerySchema(Schema):
    state = fields.String(load_default="all", validate=validate.OneOf(FINDING_STATES))


class FindingSchema(Schema):
    id = fields.Integer(required=True)
    rule = fields.String(required=True)
    subject = fields.String(required=True)
    severity = fields.String(required=True, metadata={"enum": list(SEVERITIES)})
    message = fields.String(required=True)
    details = fields.Dict(required=True)
    open = fields.Function(lambda f: f.closed_at is None, required=True, metadata={"type": "boolean"})
    opened_at = fields.DateTime(required=True)
    last_seen_at = fields.DateTime(required=True)
    closed_at = fields.DateTime(allow_none=True, required=True)


# -- apps report --------------------------------------------------------------------------------


class AppReportQuerySchema(PageQuerySchema):
    q = Text(validate=validate.Length(min=1, max=100), metadata={"description": "identifier or name"})
    unit_id = Id(strict=False, metadata={"description": "only devices in this org unit or below it"})
    platform = fields.String(validate=validate.OneOf(("apple", "android")))
    unauthorized = fields.Boolean(
        load_default=False, metadata={"description": "only apps unauthorized on at least one device"}
    )
    sort = fields.String(
        load_default="-devices", validate=validate.OneOf(("-devices", "identifier", "-unauthorized"))
    )


class AppReportRowSchema(Schema):
    identifier = fields.String(required=True)
    name = fields.String(allow_none=True, required=True)
    devices = fields.Integer(required=True, metadata={"description": "visible devices that have it"})
    unauthorized_devices = fields.Integer(
        required=True, metadata={"description": "of those, how many have an open unauthorized-app finding"}
    )


class AppReportPageSchema(PageSchema):
    items = fields.List(fields.Nested(AppReportRowSchema), required=True)


# -- alerts -------------------------------------------------------------------------------------


class AlertQuerySchema(PageQuerySchema):
    state = fields.String(
        validate=validate.OneOf(ALERT_STATES), metadata={"description": "open: not acknowledged"}
    )
    severity = fields.String(validate=validate.OneOf(SEVERITIES))
    unit_id = Id(strict=False, metadata={"description": "alerts of this org unit or below it"})
    device_id = Id(strict=False)
    kind = Text(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "exact kind, or a prefix ending in a dot (compliance.)"},
    )


class AlertSchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    severity = fields.String(required=True)
    title = fields.String(required=True)
    device_id = fields.Integer(allow_none=True, required=True)
    org_unit_id = fields.Integer(allow_none=True, required=True)
    finding_id = fields.Integer(allow_none=True, required=True)
    details = fields.Dict(required=True)
    created_at = fields.DateTime(required=True)
    state = fields.Function(
        lambda a: "open" if a.acknowledged_at is None else "acknowledged",
        required=True,
        metadata={"type": "string", "enum": list(ALERT_STATES)},
    )
    acknowledged_at = fields.DateTime(allow_none=True, required=True)
    acknowledged_by = fields.String(allow_none=True, required=True)
    acknowledge_comment = fields.String(allow_none=True, required=True)
    emailed_at = fields.DateTime(allow_none=True, required=True)
    email_attempts = fields.Integer(required=True)
    email_error = fields.String(allow_none=True, required=True)


class AlertPageSchema(PageSchema):
    items = fields.List(fields.Nested(AlertSchema), required=True)


class WebhookAttemptSchema(Schema):
    attempted_at = fields.DateTime(required=True)
    status_code = fields.Integer(allow_none=True, required=True)
    error = fields.String(allow_none=True, required=True)
    duration_ms = fields.Integer(required=True)


class WebhookDeliverySchema(Schema):
    id = fields.Integer(required=True)
    webhook_id = fields.Integer(required=True)
    webhook_name = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(DELIVERY_STATES)})
    attempts = fields.Integer(required=True)
    next_attempt_at = fields.DateTime(allow_none=True, required=True)
    delivered_at = fields.DateTime(allow_none=True, required=True)
    last_error = fields.String(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    attempt_log = fields.List(fields.Nested(WebhookAttemptSchema), required=True)


class AlertDetailSchema(AlertSchema):
    deliveries = fields.List(fields.Nested(WebhookDeliverySchema), required=True)


class AcknowledgeSchema(Schema):
    comment = Text(
        required=True,
        validate=validate.Length(min=1, max=2000),
        metadata={"description": "what was done about it (kept in the audit log)"},
    )
