"""A shift, walked end to end over real HTTP: three units with plans; a tablet is lost (an
incident on the hotline) and its unit drops to degraded; a Server-Sent Events subscriber and a
webhook receiver both hear it within a second, under the same event id a poller sees; a spare is
swapped in; it checks in through /mdm/connect and the unit is ready again."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from commands.incidents import open_incident
from mdm.ground import clock
from mdm.ground.models import Device, IncidentStep
from mdm.services.alerts.signing import SIGNATURE_HEADER, verify_signature
from mdm.services.alerts.webhooks import create_webhook
from mdm.services.orgunits import assign_device
from tests.alerts.receiver import webhook_receiver
from tests.continuity.helpers import ADMIN, OPERATOR, build_tree, tablet
from tests.web.helpers import bearer, live_server, make_token

WITHIN = 1.0  # seconds: the dispatch center hears of a change at once


@dataclass
class Subscriber:
    """Reads /api/v1/readiness/stream in a thread, as a dispatch system's EventSource would."""

    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)


@contextmanager
def sse_subscriber(base: str, token: str) -> Iterator[Subscriber]:
    sub = Subscriber()
    client = httpx.Client(timeout=httpx.Timeout(30.0))
    stop = threading.Event()

    def read() -> None:
        headers = {**bearer(token), "Accept": "text/event-stream"}
        try:
            with client.stream(
                "GET", f"{base}/api/v1/readiness/stream?lifetime=60", headers=headers
            ) as response:
                assert response.status_code == 200
                current: dict[str, str] = {}
                for line in response.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith(":"):
                        sub.comments.append(line)
                        sub.connected.set()
                    elif line == "":
                        if "data" in current:
                            event = json.loads(current["data"])
                            event["_sse_id"] = int(current["id"])
                            sub.events.append(event)
                        current = {}
                    else:
                        key, _, value = line.partition(": ")
                        current[key] = value
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test

    thread = threading.Thread(target=read, name="sse-subscriber", daemon=True)
    thread.start()
    try:
        assert sub.connected.wait(5), "the stream did not open"
        yield sub
    finally:
        stop.set()
        client.close()
        thread.join(1)  # a daemon: it ends at the next heartbeat at the latest


def wait_for(predicate: Callable[[], Any], timeout: float) -> float | None:
    """Seconds until `predicate()` held, or None if it never did within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def unit_events(events: list[dict[str, Any]], unit_id: int) -> list[dict[str, Any]]:
    return [e for e in events if e["unit"]["id"] == unit_id]


@pytest.fixture
def shift(app, app_session, settings, device_ca):
    session = app_session  # the app's wiring posts the readiness webhooks after its commits
    tree = build_tree(session)
    lost = tablet(session, tree.ambulance3, "救急3 iPad")
    tablet(session, tree.pump, "ポンプ iPad")
    tablet(session, tree.command, "指揮 iPad 1")
    tablet(session, tree.command, "指揮 iPad 2")
    session.commit()
    tokens = {role: make_token(session, role) for role in ("admin", "operator", "dispatch")}
    return tree, lost, tokens


def test_shift_walk(app, app_session, settings, device_ca, shift):
    session = app_session
    from tests.support.apple_device import SimulatedIPad

    tree, lost, tokens = shift
    with live_server(app) as base, webhook_receiver() as receiver, httpx.Client(base_url=base) as http:
        admin, operator, dispatch = (bearer(tokens[r]) for r in ("admin", "operator", "dispatch"))

        # Plans for the three units of 中央署 (the 北署 ambulance keeps its type's defaults).
        for unit, required in ((tree.ambulance3, 1), (tree.pump, 1), (tree.command, 2)):
            plan = {"required_working": required, "max_seen_minutes": 120, "min_battery_percent": 20}
            response = http.put(f"/api/v1/org-units/{unit.id}/continuity-plan", json=plan, headers=admin)
            assert response.status_code == 200, response.text
            assert response.json()["is_default"] is False

        # A spare iPad enrolls, is placed at 中央署 and kept as its spare.
        cert, key = device_ca.issue_identity("spare-ipad")
        spare_ipad = SimulatedIPad(cert, key, device_name="中央署 予備機")
        assert spare_ipad.checkin(http, spare_ipad.authenticate_body()).status_code == 200
        assert spare_ipad.checkin(http, spare_ipad.token_update_body()).status_code == 200
        session.rollback()
        session.expire_all()
        spare = session.scalars(select(Device).where(Device.udid == spare_ipad.udid)).one()
        assign_device(session, spare, tree.central, actor=ADMIN)
        session.commit()
        response = http.put(f"/api/v1/readiness/spares/{spare.id}", json={"spare": True}, headers=admin)
        assert response.status_code == 200, response.text
        # It then sits charging in the cabinet: last heard of six hours ago.
        session.expire_all()
        spare.last_seen_at = clock.now() - timedelta(hours=6)
        session.commit()

        _, secret = create_webhook(
            session,
            ADMIN,
            "消防指令システム",
            receiver.url,
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
        session.commit()

        start = http.get("/api/v1/readiness", headers=dispatch).json()
        by_unit = {u["unit_id"]: u for u in start["units"]}
        assert by_unit[tree.ambulance3.id]["state"] == "ready"
        assert by_unit[tree.pump.id]["spares_available"] == 1
        first_id = start["last_event_id"]

        with sse_subscriber(base, tokens["dispatch"]) as sub:
            # 1. The 救急3隊 tablet is reported lost on the hotline.
            incident = open_incident(
                session, lost, {"caller_name": "救急3隊 隊長", "kind": "lost"}, actor=OPERATOR
            )
            session.commit()
            t_sse = wait_for(lambda: unit_events(sub.events, tree.ambulance3.id), WITHIN)
            t_hook = wait_for(lambda: receiver.requests, WITHIN)
            assert t_sse is not None, "the stream did not hear of the loss within a second"
            assert t_hook is not None, "the webhook did not hear of the loss within a second"
            [streamed] = unit_events(sub.events, tree.ambulance3.id)
            assert (streamed["previous_state"], streamed["state"]) == ("ready", "degraded")
            assert streamed["cause"]["en"] == (
                f"Ambulance 3: degraded — tablet lost (incident {incident.id}), "
                "1 spare(s) at Central (0/1 working)"
            )
            assert streamed["cause"]["ja"].startswith(
                f"救急3隊: 縮退 — 端末紛失 (インシデント {incident.id})"
            )

            [hook] = receiver.requests
            assert verify_signature(secret.encode(), hook.body, hook.headers[SIGNATURE_HEADER])
            assert hook.headers["X-Hikeshi-Event"] == "readiness.changed"
            pushed = json.loads(hook.body)
            assert pushed["event_id"] == streamed["event_id"] == streamed["_sse_id"]
            assert int(hook.headers["X-Hikeshi-Event-Id"]) == pushed["event_id"]

            polled = http.get("/api/v1/readiness", headers=dispatch).json()
            polled_unit = {u["unit_id"]: u for u in polled["units"]}[tree.ambulance3.id]
            assert (polled_unit["state"], polled_unit["event_id"]) == ("degraded", pushed["event_id"])
            assert polled["last_event_id"] == pushed["event_id"]
            central = {s["org_unit_id"]: s for s in polled["stations"]}[tree.central.id]
            assert central["state"] == "degraded" and central["counts"]["degraded"] == 1

            # 2. The operator swaps the spare in, as the step after "lock now".
            response = http.post(
                "/api/v1/readiness/spare-swap",
                json={"spare_device_id": spare.id, "unit_id": tree.ambulance3.id, "incident_id": incident.id},
                headers=operator,
            )
            assert response.status_code == 200, response.text
            swapped = response.json()
            assert swapped["recorded_on_incident"] and swapped["from_org_unit_id"] == tree.central.id
            assert (swapped["unit"]["state"], swapped["unit"]["incoming_spares"]) == ("degraded", 1)
            session.rollback()
            session.expire_all()
            steps = session.scalars(
                select(IncidentStep.action).where(IncidentStep.incident_id == incident.id)
            )
            assert "spare_swapped" in list(steps)

            # 3. The spare checks in from the ambulance: working, the unit is ready again.
            response = spare_ipad.connect(http, spare_ipad.idle_body())
            assert response.status_code == 200
            recovered = wait_for(
                lambda: unit_events(sub.events, tree.ambulance3.id)[-1]["state"] == "ready", WITHIN
            )
            assert recovered is not None, "the stream did not hear of the recovery within a second"
            assert (
                wait_for(lambda: json.loads(receiver.requests[-1].body)["state"] == "ready", WITHIN)
                is not None
            )
            final = unit_events(sub.events, tree.ambulance3.id)[-1]
            assert final["working"] == 1 and final["cause"]["code"] == "spare_working"

            # Poller, stream and webhook receiver saw the same changes under the same ids.
            assert wait_for(lambda: len(receiver.requests) == len(sub.events), WITHIN) is not None
            stream_ids = [e["event_id"] for e in sub.events]
            hook_ids = [json.loads(r.body)["event_id"] for r in receiver.requests]
            polled_ids = [
                e["event_id"]
                for e in http.get(f"/api/v1/readiness/events?after={first_id}", headers=dispatch).json()[
                    "items"
                ]
            ]
            assert stream_ids == sorted(stream_ids) and stream_ids == hook_ids == polled_ids
            assert [e["state"] for e in unit_events(sub.events, tree.ambulance3.id)] == [
                "degraded",
                "degraded",
                "ready",
            ]
            last = http.get("/api/v1/readiness", headers=dispatch).json()
            assert {u["unit_id"]: u["state"] for u in last["units"]}[tree.ambulance3.id] == "ready"
            assert last["last_event_id"] == stream_ids[-1]
