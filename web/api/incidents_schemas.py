"""Marshmallow schemas of the hotline API (incidents, lock now, two-person wipe, certificates)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from commands.lock_screen import MAX_FOOTNOTE, MAX_MESSAGE, MAX_PHONE, PHONE_ERROR
from mdm.ground.models.incident import IncidentStatus, LossKind
from web.api.schemas import (
    CommandSchema,
    DeviceSchema,
    Id,
    LockStateSchema,
    PageQuerySchema,
    PageSchema,
    Text,
    When,
)

PHONE_DESCRIPTION = f"callback number, up to {MAX_PHONE} characters: {PHONE_ERROR}"
WIPE_PROGRESS = [
    "not_requested",
    "requested",
    "approved_not_delivered",
    "delivered_not_confirmed",
    "confirmed",
    "failed",
]

# -- input ------------------------------------------------------------------------------------------


class IncidentCreateSchema(Schema):
    device_id = Id(required=True)
    caller_name = Text(required=True, validate=validate.Length(min=1, max=100))
    caller_unit = Text(load_default="", validate=validate.Length(max=100))
    callback_number = Text(load_default="", metadata={"description": PHONE_DESCRIPTION})
    lost_at = When(load_default=None, allow_none=True)
    lost_place = Text(load_default="", validate=validate.Length(max=255))
    kind = fields.String(load_default=LossKind.LOST, validate=validate.OneOf(LossKind.ALL))
    notes = Text(load_default="", validate=validate.Length(max=4000))


class IncidentQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(IncidentStatus.ALL))
    active = fields.Boolean(metadata={"description": "true: open incidents only; false: finished ones"})
    device_id = Id(strict=False)
    q = Text(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "caller name or unit, place, operator, device serial or name"},
    )


class LockSchema(Schema):
    """Checked once, by the lock command itself (commands.lock_screen); a refusal names the field."""

    message = Text(metadata={"description": f"shown on the lock screen (1-{MAX_MESSAGE} characters)"})
    phone_number = Text(allow_none=True, metadata={"description": PHONE_DESCRIPTION})
    footnote = Text(metadata={"description": f"lost mode only (1-{MAX_FOOTNOTE} characters)"})


class ReasonSchema(Schema):
    reason = Text(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class RequiredReasonSchema(Schema):
    reason = Text(required=True, validate=validate.Length(min=1, max=2000))


class RecoverSchema(Schema):
    note = Text(load_default=None, allow_none=True, validate=validate.Length(max=2000))


# -- output -----------------------------------------------------------------------------------------


class IncidentSummarySchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": list(IncidentStatus.ALL)})
    status_label_ja = fields.String(required=True)
    status_label_en = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": list(LossKind.ALL)})
    device_id = fields.Integer(required=True)
    device_name = fields.String(allow_none=True, required=True)
    serial_number = fields.String(allow_none=True, required=True)
    org_unit_id = fields.Integer(allow_none=True, required=True)
    caller_name = fields.String(required=True)
    caller_unit = fields.String(required=True)
    operator = fields.String(required=True)
    opened_at = fields.DateTime(required=True)
    wipe_progress = fields.String(
        required=True,
        metadata={
            "enum": WIPE_PROGRESS,
            "description": "`approved_not_delivered`: EraseDevice is queued or pushed but the device "
            "has not fetched it; the device is called wiped only on its acknowledgement (`confirmed`)",
        },
    )

    lock = fields.Nested(
        LockStateSchema,
        required=True,
        metadata={"description": "the newest lock: sent, acknowledged and displayed, or not displayed"},
    )


class IncidentPageSchema(PageSchema):
    items = fields.List(fields.Nested(IncidentSummarySchema), required=True)


class LocationSchema(Schema):
    latitude = fields.Float(required=True)
    longitude = fields.Float(required=True)
    accuracy = fields.Float(allow_none=True, required=True, metadata={"description": "metres"})
    located_at = fields.DateTime(required=True)
    map_url = fields.String(required=True)


class IncidentCommandSchema(Schema):
    uuid = fields.String(required=True)
    request_type = fields.String(required=True)
    purpose = fields.String(required=True)
    state = fields.String(
        required=True,
        metadata={
            "enum": [
                "queued",
                "pushed",
                "delivered",
                "acknowledged",
                "error",
                "not_now",
                "cancelled",
                "expired",
            ]
        },
    )
    queued_at = fields.DateTime(required=True)
    pushed_at = fields.DateTime(allow_none=True, required=True)
    delivered_at = fields.DateTime(allow_none=True, required=True)
    acknowledged_at = fields.DateTime(allow_none=True, required=True)
    error_at = fields.DateTime(allow_none=True, required=True)
    error_chain = fields.List(fields.Raw(), allow_none=True, required=True)
    delivery_count = fields.Integer(required=True)


class PushAttemptSchema(Schema):
    attempted_at = fields.DateTime(required=True)
    attempt = fields.Integer(required=True, metadata={"description": "tries this push took (retries + 1)"})
    status_code = fields.Integer(allow_none=True, required=True, metadata={"description": "APNs answer"})
    reason = fields.String(allow_none=True, required=True)
    accepted = fields.Boolean(required=True)


class TimelineEntrySchema(Schema):
    at = fields.DateTime(required=True)
    kind = fields.String(required=True, metadata={"enum": ["step", "command", "push"]})
    action = fields.String(required=True)
    actor = fields.String(allow_none=True, required=True)
    details = fields.Dict(required=True)
    flagged = fields.Boolean(required=True, metadata={"description": "break glass or policy wipe (red)"})


class CertificateInfoSchema(Schema):
    issued_at = fields.DateTime(required=True)
    signed = fields.Boolean(required=True)
    signer_fingerprint = fields.String(allow_none=True, required=True)


class ScreenTextSchema(Schema):
    request_type = fields.String(required=True)
    command_uuid = fields.String(required=True)
    message = fields.String(allow_none=True, required=True)
    phone_number = fields.String(allow_none=True, required=True)
    footnote = fields.String(allow_none=True, required=True)
    at = fields.DateTime(allow_none=True, required=True)


class FinderScreenSchema(Schema):
    state = fields.String(
        required=True,
        metadata={
            "description": "nothing_sent, not_acknowledged (unknown), shown, not_shown, unknown, failed or "
            "ended: only what the tablet answered"
        },
    )
    text = fields.Nested(
        ScreenTextSchema,
        allow_none=True,
        required=True,
        metadata={"description": "what the tablet shows (shown), or what the answered command carried"},
    )
    waiting = fields.Nested(
        ScreenTextSchema,
        allow_none=True,
        required=True,
        metadata={"description": "a newer lock the tablet has not answered: not on its screen yet"},
    )


class IncidentDetailSchema(IncidentSummarySchema):
    device = fields.Nested(DeviceSchema, required=True)
    org_unit_path = fields.String(allow_none=True, required=True)
    callback_number = fields.String(required=True)
    lost_at = fields.DateTime(allow_none=True, required=True)
    lost_place = fields.String(required=True)
    notes = fields.String(required=True)
    locked_at = fields.DateTime(allow_none=True, required=True)
    lost_mode = fields.Boolean(
        required=True,
        metadata={"description": "EnableLostMode was sent; `lock` says what the device confirmed"},
    )
    wipe_requested_by = fields.String(allow_none=True, required=True)
    wipe_requested_at = fields.DateTime(allow_none=True, required=True)
    wipe_request_reason = fields.String(allow_none=True, required=True)
    wipe_approved_by = fields.String(allow_none=True, required=True)
    wipe_approved_at = fields.DateTime(allow_none=True, required=True)
    break_glass = fields.Boolean(required=True)
    break_glass_reason = fields.String(allow_none=True, required=True)
    wiped_at = fields.DateTime(allow_none=True, required=True)
    recovered_by = fields.String(allow_none=True, required=True)
    recovered_at = fields.DateTime(allow_none=True, required=True)
    closed_at = fields.DateTime(allow_none=True, required=True)
    location = fields.Nested(LocationSchema, allow_none=True, required=True)
    locations = fields.List(fields.Nested(LocationSchema), required=True)
    commands = fields.List(fields.Nested(IncidentCommandSchema), required=True)
    push_attempts = fields.List(fields.Nested(PushAttemptSchema), required=True)
    timeline = fields.List(fields.Nested(TimelineEntrySchema), required=True)
    certificate = fields.Nested(CertificateInfoSchema, allow_none=True, required=True)
    finder = fields.Nested(
        FinderScreenSchema, required=True, metadata={"description": "what the finder of the tablet sees"}
    )


class IncidentActionSchema(Schema):
    incident = fields.Nested(IncidentDetailSchema, required=True)
    command = fields.Nested(CommandSchema, allow_none=True, required=True)
    notice_ja = fields.String(allow_none=True, required=True)
    notice_en = fields.String(allow_none=True, required=True)
