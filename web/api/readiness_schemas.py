"""Marshmallow schemas of the readiness API (dispatch feed, plans, spares)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from mdm.ground.models import ReadinessState
from mdm.services.continuity.plans import PlanSchema
from mdm.services.continuity.readiness import MISSING_SHOWN
from web.api.base import MAX_ID
from web.api.schemas import Id, PageQuerySchema, StrictBoolean


class ReasonSchema(Schema):
    code = fields.String(required=True)
    ja = fields.String(required=True)
    en = fields.String(required=True)


class MissingDeviceSchema(Schema):
    device_id = fields.Integer(required=True)
    name = fields.String(required=True)
    serial_number = fields.String(allow_none=True)
    incoming_spare = fields.Boolean()
    reasons = fields.List(fields.Dict(), required=True)


class AsPublished(fields.Nested):
    """Documented as its schema, answered as stored: a recompute wrote these entries in exactly
    this shape (serialized field by field, a page's 2,000 missing tablets were most of its time)."""

    # Nested's own signature, which marshmallow's typing declares apart from Field's.
    def _serialize(self, nested_obj: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return nested_obj


class UnitReadinessSchema(Schema):
    unit_id = fields.Integer(required=True)
    unit_name_ja = fields.String(required=True)
    unit_name_en = fields.String(allow_none=True, required=True)
    unit_code = fields.String(allow_none=True, required=True)
    unit_type = fields.String(allow_none=True, required=True)
    state = fields.String(required=True, validate=validate.OneOf(ReadinessState.ORDER))
    working = fields.Integer(required=True)
    required = fields.Integer(required=True)
    spares_available = fields.Integer(required=True)
    incoming_spares = fields.Integer(required=True)
    station_id = fields.Integer(allow_none=True, required=True)
    station_name_ja = fields.String(required=True)
    station_name_en = fields.String(required=True)
    missing = AsPublished(
        MissingDeviceSchema,
        many=True,
        required=True,
        metadata={
            "description": f"the first {MISSING_SHOWN} tablets that do not count, worst first (lost or "
            "stolen before not seen); all of them: /readiness/units/{unit_id}/missing"
        },
    )
    missing_total = fields.Integer(
        required=True, metadata={"description": "how many tablets of the unit do not count"}
    )
    plan = fields.Dict(required=True)
    event_id = fields.Integer(allow_none=True, required=True)
    changed_at = fields.DateTime(allow_none=True, required=True)


class RollupSchema(Schema):
    org_unit_id = fields.Integer(allow_none=True, required=True)
    name_ja = fields.String(required=True)
    name_en = fields.String(required=True)
    kind = fields.String(required=True)
    state = fields.String(required=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    unit_ids = fields.List(fields.Integer(), required=True)
    spares_available = fields.Integer(required=True)


# A page of units: a prefecture has 14,000 of them (all at once: 32 s and 15 MB).
READINESS_PER_PAGE = 100
READINESS_MAX_PER_PAGE = 500


class ReadinessQuerySchema(PageQuerySchema):
    per_page = fields.Integer(
        load_default=READINESS_PER_PAGE,
        validate=validate.Range(min=1, max=READINESS_MAX_PER_PAGE),
        metadata={
            "description": f"units per page (default {READINESS_PER_PAGE}, at most {READINESS_MAX_PER_PAGE})"
        },
    )
    unit_id = Id(
        strict=False,
        metadata={"description": "only units (隊) in this org unit or below it, e.g. one station"},
    )
    state = fields.String(
        validate=validate.OneOf(ReadinessState.ORDER), metadata={"description": "only units in this state"}
    )


class ReadinessSchema(Schema):
    last_event_id = fields.Integer(
        required=True, metadata={"description": "resume the stream or /readiness/events from here"}
    )
    generated_at = fields.DateTime(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(
        required=True,
        metadata={
            "description": "units matching in scope: read pages 1 … ceil(total / per_page) to have them all"
        },
    )
    counts = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "the matching units by state (every page, not only this one)"},
    )
    units = fields.List(
        fields.Nested(UnitReadinessSchema),
        required=True,
        metadata={"description": "this page's units, ordered by unit code, then name, then id"},
    )
    stations = fields.List(
        fields.Nested(RollupSchema),
        required=True,
        metadata={
            "description": "per station: counts over every matching unit; unit_ids lists this page's units"
        },
    )
    hq = fields.List(
        fields.Nested(RollupSchema),
        required=True,
        metadata={"description": "per HQ: counts over every matching unit; unit_ids lists this page's units"},
    )


class ReadinessEventSchema(Schema):
    """One change: the same object as the stream's `data` and the webhook body."""

    event_id = fields.Integer(required=True)
    kind = fields.String(required=True)
    occurred_at = fields.String(required=True)
    unit = fields.Dict(required=True)
    previous_state = fields.String(allow_none=True, required=True)
    state = fields.String(required=True)
    working = fields.Integer(required=True)
    required = fields.Integer(required=True)
    spares_available = fields.Integer(required=True)
    incoming_spares = fields.Integer(required=True)
    station = fields.Dict(required=True)
    cause = fields.Dict(required=True)
    missing = fields.List(
        fields.Dict(),
        required=True,
        metadata={"description": f"the first {MISSING_SHOWN} tablets that do not count, worst first"},
    )
    missing_total = fields.Integer(
        metadata={
            "description": "how many tablets do not count (absent from events published before it was "
            "added, whose `missing` lists every one)"
        }
    )


class MissingQuerySchema(PageQuerySchema):
    per_page = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class MissingPageSchema(Schema):
    unit_id = fields.Integer(required=True)
    event_id = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "the change that published this list (null: not evaluated yet)"},
    )
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)
    items = fields.List(fields.Nested(MissingDeviceSchema), required=True)


class EventsQuerySchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_ID))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class EventPageSchema(Schema):
    last_event_id = fields.Integer(required=True)
    items = fields.List(fields.Nested(ReadinessEventSchema), required=True)


class StreamQuerySchema(Schema):
    last_event_id = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=MAX_ID),
        metadata={"description": "resume after this id (the Last-Event-ID header wins)"},
    )
    lifetime = fields.Integer(
        load_default=300,
        validate=validate.Range(min=1, max=3600),
        metadata={"description": "seconds before the server closes the stream (clients reconnect)"},
    )


class PlanBodySchema(PlanSchema):
    """The continuity plan of a unit, every field given."""

    # The console's form goes through PlanSchema, which reads its checkbox strings; JSON has booleans.
    require_compliant = StrictBoolean(load_default=True)


class PlanOutSchema(Schema):
    org_unit_id = fields.Integer(required=True)
    required_working = fields.Integer(required=True)
    max_seen_minutes = fields.Integer(required=True)
    min_battery_percent = fields.Integer(required=True)
    require_compliant = fields.Boolean(required=True)
    ignored_rules = fields.List(fields.String(), required=True)
    is_default = fields.Boolean(
        required=True, metadata={"description": "true: no plan stored, the unit type's defaults apply"}
    )


class SpareSwapSchema(Schema):
    spare_device_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))
    unit_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))
    incident_id = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1, max=MAX_ID)
    )


class SpareSwapResultSchema(Schema):
    device_id = fields.Integer(required=True)
    unit_id = fields.Integer(required=True)
    from_org_unit_id = fields.Integer(allow_none=True, required=True)
    incident_id = fields.Integer(allow_none=True, required=True)
    recorded_on_incident = fields.Boolean(required=True)
    unit = fields.Nested(UnitReadinessSchema, allow_none=True, required=True)


class SpareMarkSchema(Schema):
    spare = fields.Boolean(required=True, metadata={"description": "true: keep as a spare; false: stop"})
    note = fields.String(load_default="", validate=validate.Length(max=255))


class SpareSchema(Schema):
    device_id = fields.Integer(required=True)
    name = fields.String(required=True)
    serial_number = fields.String(allow_none=True, required=True)
    org_unit_id = fields.Integer(allow_none=True, required=True)
    available = fields.Boolean(required=True)
    problem_ja = fields.String(allow_none=True, required=True)
    problem_en = fields.String(allow_none=True, required=True)


class StationSparesSchema(Schema):
    station_id = fields.Integer(required=True)
    name_ja = fields.String(required=True)
    name_en = fields.String(required=True)
    available = fields.Integer(required=True)
    spares = fields.List(fields.Nested(SpareSchema), required=True)
