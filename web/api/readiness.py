"""The dispatch feed: unit readiness to poll, a Server-Sent Events stream of its changes, the
continuity plan of each unit, spares and the spare swap.

Poller, stream and webhooks read one table of change events with increasing ids
(mdm.ground.models.ReadinessEvent): `last_event_id` of GET /readiness is where a stream (Last-Event-ID)
or GET /readiness/events resumes, and every event carries the same id in all three.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, request
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mdm.doors.appctx import command_context, db_session, hikeshi
from mdm.ground import clock
from mdm.ground.db import make_session_factory, read_mostly
from mdm.ground.models import Device, Incident, OrgUnit, OrgUnitKind
from mdm.ground.signals import READINESS, SignalHub, hub_for
from mdm.services.continuity import (
    PlanError,
    SpareError,
    current_readiness,
    events_after,
    last_event_id,
    mark_spare,
    plan_for,
    set_plan,
    spares_by_station,
    swap_spare,
    unmark_spare,
)
from mdm.services.continuity.readiness_pages import missing_page, readiness_page
from web.api.auth import current_principal
from web.api.base import ID, MAX_ID, ApiBlueprint, permission
from web.api.readiness_schemas import (
    EventPageSchema,
    EventsQuerySchema,
    MissingPageSchema,
    MissingQuerySchema,
    PlanBodySchema,
    PlanOutSchema,
    ReadinessQuerySchema,
    ReadinessSchema,
    SpareMarkSchema,
    SpareSwapResultSchema,
    SpareSwapSchema,
    StationSparesSchema,
    StreamQuerySchema,
)
from web.errors import ApiError, field_error
from web.queries import visible_unit
from web.rbac import Permission

log = logging.getLogger(__name__)
blp = ApiBlueprint("readiness", __name__, url_prefix="/api/v1", description="Readiness (dispatch feed)")

# A stream wakes on the readiness signal (mdm.ground.signals: PostgreSQL NOTIFY from any node)
# and re-reads the table anyway this often: a signal lost with a connection costs no event.
RECHECK_SECONDS = 2.0
# Without a live signal (SQLite with several worker processes, or the listening connection
# down), a change committed elsewhere is seen by polling this often.
POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 5.0  # a comment line, so proxies keep an idle stream open
BATCH = 100


def _scope() -> frozenset[int] | None:
    return current_principal().scope_unit_ids


def _unit_or_404(unit_id: int) -> OrgUnit:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None:
        raise ApiError(404, f"no org unit with id {unit_id}")
    return unit


@blp.route("/readiness", methods=["GET"])
@blp.arguments(ReadinessQuerySchema, location="query", as_kwargs=True)
@blp.response(200, ReadinessSchema)
@permission(Permission.READINESS_READ)
def get_readiness(page: int, per_page: int, unit_id: int | None = None, state: str | None = None) -> Any:
    """Visible units, a page at a time: ready / degraded / critical, working vs required tablets,
    what is missing and why, spares at its station; rolled up per station and per HQ over every
    matching unit. To read every unit, fetch pages 1 … ceil(total / per_page) (the units are in
    unit code order), then follow the changes from `last_event_id` of the first page with
    /readiness/stream or /readiness/events: nothing changed in between is lost."""
    session = db_session()
    if unit_id is not None:
        _unit_or_404(unit_id)
    last = last_event_id(session)  # read first: the units below are at least this new
    found = readiness_page(session, _scope(), page=page, per_page=per_page, under=unit_id, state=state)
    return {
        "last_event_id": last,
        "generated_at": clock.now(),
        "page": found.page,
        "per_page": found.per_page,
        "total": found.total,
        "counts": found.counts,
        "units": found.units,
        "stations": found.stations,
        "hq": found.hq,
    }


@blp.route(f"/readiness/units/<{ID}:unit_id>/missing", methods=["GET"])
@blp.arguments(MissingQuerySchema, location="query", as_kwargs=True)
@blp.response(200, MissingPageSchema)
@permission(Permission.READINESS_READ)
def list_missing(unit_id: int, page: int, per_page: int) -> Any:
    """Every tablet of one unit that does not count and why, worst first, a page at a time: as
    the unit's last readiness event published them (`event_id`). A page of units and an event
    carry only the first of them, and `missing_total`."""
    unit = _unit_or_404(unit_id)
    if unit.kind != OrgUnitKind.UNIT:
        raise ApiError(404, f"org unit {unit_id} is a {unit.kind}; only a unit (隊) has readiness")
    return missing_page(db_session(), unit, page=page, per_page=per_page)


@blp.route("/readiness/events", methods=["GET"])
@blp.arguments(EventsQuerySchema, location="query", as_kwargs=True)
@blp.response(200, EventPageSchema)
@permission(Permission.READINESS_READ)
def list_events(after: int, limit: int) -> Any:
    """Changes after `after`, oldest first: the same events (and ids) as the stream and webhooks."""
    session = db_session()
    events = events_after(session, after, limit=limit, principal_scope=_scope())
    last = events[-1].id if events else max(after, 0)
    return {"last_event_id": last, "items": [e.payload for e in events]}


_STREAM_DOC = {
    "responses": {
        "200": {
            "description": "text/event-stream: `id:` the event id, `event: readiness`, `data:` the change "
            "as JSON (as in /readiness/events). Comment lines are heartbeats. Without "
            "`Accept: text/event-stream` the events after Last-Event-ID are returned at once and "
            "the response ends.",
            "content": {
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "description": "one event: `data` is a change as JSON, `id` its event id",
                        "properties": {
                            "id": {"type": "string"},
                            "event": {"type": "string", "enum": ["readiness"]},
                            "data": {"type": "string"},
                            "retry": {"type": "integer"},
                        },
                    }
                }
            },
        }
    }
}


def _resume_point(query_last: int | None) -> int | None:
    header = request.headers.get("Last-Event-ID")
    if header is None or not header.strip():
        return query_last
    try:
        value = int(header.strip())
    except ValueError:
        raise field_error("Last-Event-ID", "must be an event id (a whole number)") from None
    if value < 0:
        raise field_error("Last-Event-ID", "must not be negative")
    if value > MAX_ID:
        raise field_error("Last-Event-ID", f"must be at most {MAX_ID}")
    return value


def _wants_live_stream() -> bool:
    return any(kind == "text/event-stream" for kind, _q in request.accept_mimetypes)


@blp.route("/readiness/stream", methods=["GET"])
@blp.arguments(StreamQuerySchema, location="query", as_kwargs=True)
@blp.doc(**_STREAM_DOC)
@permission(Permission.READINESS_READ)
def stream(last_event_id: int | None, lifetime: int) -> Response:
    """Server-Sent Events of readiness changes, resumable with Last-Event-ID; closes after
    `lifetime` seconds (EventSource reconnects and resumes)."""
    after = _resume_point(last_event_id)
    session = db_session()
    if after is None:
        after = _current_last(session)
    scope = _scope()
    engine = hikeshi().engine
    session.close()  # the stream reads with its own short transactions
    live = _wants_live_stream()
    body = _events(engine, hub_for(engine.url), after, scope, lifetime if live else 0)
    return Response(
        body,
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _current_last(session: Any) -> int:
    return last_event_id(session)


def _format(event_id: int, payload: dict[str, Any]) -> str:
    data = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return f"id: {event_id}\nevent: readiness\ndata: {data}\n\n"


def _events(
    engine: Engine, signals: SignalHub, after: int, scope: frozenset[int] | None, lifetime: float
) -> Iterator[str]:
    reader = make_session_factory(read_mostly(engine))
    beacon = signals.beacon(READINESS)
    started = time.monotonic()
    beat = started
    yield f"retry: 2000\n: hikeshi readiness stream from event {after}\n\n"
    while True:
        # The ticket before the read: a change committed while we read still ends the wait below.
        ticket = beacon.ticket()
        try:
            with reader() as session:
                found = events_after(session, after, limit=BATCH, principal_scope=scope)
                events = [(e.id, e.payload) for e in found]
        except SQLAlchemyError as exc:
            # The client reconnects with Last-Event-ID (to this node or another) and loses nothing.
            log.warning("readiness stream ends: database unreachable: %s", exc)
            yield ": database unreachable, reconnect with Last-Event-ID\n\n"
            return
        for event_id, payload in events:
            yield _format(event_id, payload)
            after = event_id
        if len(events) == BATCH:
            continue
        now = time.monotonic()
        if now - started >= lifetime:
            yield ": stream ends, reconnect with Last-Event-ID\n\n"
            return
        if now - beat >= HEARTBEAT_SECONDS:
            # Also how a closed connection is noticed: writing to it ends this generator.
            beat = now
            yield ": keepalive\n\n"
        pause = RECHECK_SECONDS if signals.live else POLL_SECONDS
        beacon.wait(ticket, min(pause, HEARTBEAT_SECONDS, max(lifetime - (now - started), 0.01)))


# -- plans --------------------------------------------------------------------------------------


def _plan_out(unit: OrgUnit) -> dict[str, Any]:
    return {"org_unit_id": unit.id, **plan_for(db_session(), unit).as_dict()}


@blp.route(f"/org-units/<{ID}:unit_id>/continuity-plan", methods=["GET"])
@blp.response(200, PlanOutSchema)
@permission(Permission.READINESS_READ)
def get_plan(unit_id: int) -> Any:
    """The unit's continuity plan (its unit type's defaults when none is stored)."""
    unit = _unit_or_404(unit_id)
    if unit.kind != OrgUnitKind.UNIT:
        raise ApiError(404, f"org unit {unit_id} is a {unit.kind}; only a unit (隊) has a continuity plan")
    return _plan_out(unit)


@blp.route(f"/org-units/<{ID}:unit_id>/continuity-plan", methods=["PUT"])
@blp.arguments(PlanBodySchema)
@blp.response(200, PlanOutSchema)
@permission(Permission.CONTINUITY_WRITE)
def put_plan(body: dict[str, Any], unit_id: int) -> Any:
    """Set the unit's plan: required working tablets and what "working" means."""
    unit = _unit_or_404(unit_id)
    session = db_session()
    try:
        set_plan(session, unit, body, actor=current_principal().actor)
    except PlanError as exc:
        raise ApiError(400, str(exc), fields=exc.fields) from exc
    session.commit()
    return _plan_out(unit)


# -- spares -------------------------------------------------------------------------------------


def _visible_device(device_id: int, field: str) -> Device:
    device = db_session().get(Device, device_id)
    if device is None or not current_principal().sees_unit(device.org_unit_id):
        raise field_error(field, f"no device with id {device_id}")
    return device


@blp.route("/readiness/spares", methods=["GET"])
@blp.response(200, StationSparesSchema(many=True))
@permission(Permission.READINESS_READ)
def list_spares() -> Any:
    """Spare tablets per station, and whether each can be handed out now."""
    return spares_by_station(db_session(), _scope())


@blp.route(f"/readiness/spares/<{ID}:spare_device_id>", methods=["PUT"])
@blp.arguments(SpareMarkSchema)
@blp.response(200, StationSparesSchema(many=True))
@permission(Permission.CONTINUITY_WRITE)
def put_spare(body: dict[str, Any], spare_device_id: int) -> Any:
    """Keep a tablet at a station as a spare (`spare: true`), or stop (`spare: false`)."""
    device = _visible_device(spare_device_id, "spare_device_id")
    session = db_session()
    actor = current_principal().actor
    try:
        if body["spare"]:
            mark_spare(session, device, actor=actor, note=body["note"])
        else:
            unmark_spare(session, device, actor=actor)
    except SpareError as exc:
        # The path names the device spare_device_id; the service calls it device_id.
        name = "spare_device_id" if exc.field == "device_id" else exc.field
        raise ApiError(exc.status, f"{name}: {exc.message}", fields={name: [exc.message]}) from exc
    session.commit()
    return spares_by_station(session, _scope())


@blp.route("/readiness/spare-swap", methods=["POST"])
@blp.arguments(SpareSwapSchema)
@blp.response(200, SpareSwapResultSchema)
@permission(Permission.INCIDENT_WRITE)
def spare_swap(body: dict[str, Any]) -> Any:
    """Hand a spare to a unit: it moves there and its profiles follow. It counts as working for
    the unit (readiness recovers) only once it has checked in after the swap and a ProfileList
    shows the unit's profiles installed at their current version; until then the unit lists it
    as an incoming spare with the reason. With `incident_id`, the swap is on that incident's
    timeline."""
    session = db_session()
    principal = current_principal()
    spare = _visible_device(body["spare_device_id"], "spare_device_id")
    unit = visible_unit(session, principal, body["unit_id"])
    if unit is None:
        raise field_error("unit_id", f"no org unit with id {body['unit_id']}")
    incident = None
    if body.get("incident_id") is not None:
        incident = session.get(Incident, body["incident_id"])
        if incident is None or not principal.sees_unit(incident.org_unit_id):
            raise field_error("incident_id", f"no incident with id {body['incident_id']}")
    try:
        outcome = swap_spare(
            session, spare, unit, actor=principal.actor, incident=incident, context=command_context()
        )
    except SpareError as exc:
        raise ApiError(exc.status, str(exc), fields={exc.field: [exc.message]}) from exc
    session.commit()
    readiness = [u for u in current_readiness(session, {unit.id})]
    return {
        "device_id": outcome.device.id,
        "unit_id": unit.id,
        "from_org_unit_id": outcome.from_org_unit_id,
        "incident_id": outcome.incident_id,
        "recorded_on_incident": outcome.recorded_on_incident,
        "unit": readiness[0] if readiness else None,
    }
