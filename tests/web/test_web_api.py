"""The REST API: one error shape, validation naming the field, devices, commands, units,
enrollment tokens, users, API tokens and the audit trail."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from mdm.ground import clock
from mdm.ground.audit_sealer import seal_all
from mdm.ground.models import AuditEvent, Command, CommandStatus
from tests.web.helpers import bearer, make_token


@pytest.fixture
def admin_token(session_factory: Any, tree: Any) -> str:
    with session_factory() as session:
        return make_token(session, "admin", name="ops script")


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_errors_share_one_shape(client: Any, admin_token: str) -> None:
    _error(client.get("/api/v1/devices"), 401, "unauthenticated")
    _error(client.get("/api/v1/devices", headers=bearer("hks_nope_nope")), 401, "unauthenticated")
    _error(client.get("/api/v1/no-such-thing", headers=bearer(admin_token)), 404, "not_found")
    _error(client.get("/api/v1/devices/999999", headers=bearer(admin_token)), 404, "not_found")
    _error(client.delete("/api/v1/devices", headers=bearer(admin_token)), 405, "method_not_allowed")
    bad = _error(
        client.get("/api/v1/devices?per_page=0&platform=nokia", headers=bearer(admin_token)),
        400,
        "invalid_input",
    )
    assert set(bad["fields"]) == {"per_page", "platform"}
    bad = _error(
        client.post(
            "/api/v1/users", headers=bearer(admin_token), data="{not json", content_type="application/json"
        ),
        400,
        "invalid_input",
    )
    assert bad["fields"]
    # A number past the column range, a NUL byte: 400 naming the field, never a 500.
    bad = _error(
        client.get("/api/v1/devices?unit_id=99999999999", headers=bearer(admin_token)), 400, "invalid_input"
    )
    assert "unit_id" in bad["fields"]
    bad = _error(client.get("/api/v1/devices?q=a%00b", headers=bearer(admin_token)), 400, "invalid_input")
    assert "q" in bad["fields"]
    _error(client.get("/api/v1/devices/99999999999999", headers=bearer(admin_token)), 404, "not_found")


def test_openapi_document_is_public_and_complete(client: Any) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/api/v1/devices" in spec["paths"]
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert "default" in operation["responses"], (method, path)


def test_device_list_filters_and_pages(client: Any, admin_token: str, tree: Any) -> None:
    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/devices?{query}", headers=bearer(admin_token))
        assert response.status_code == 200, response.get_json()
        return [d["id"] for d in response.get_json()["items"]]

    everything = ids("")
    assert sorted(everything) == sorted([tree.device_a.id, tree.device_b.id, tree.device_loose.id])
    assert ids(f"unit_id={tree.station_a.id}") == [tree.device_a.id]  # subtree: A1 is under station A
    assert ids(f"unit_id={tree.hq.id}") == sorted([tree.device_a.id, tree.device_b.id])
    assert ids("q=SERIALB") == [tree.device_b.id]
    assert ids("q=%25") == []  # a literal %, not a wildcard
    assert ids("status=unenrolled") == []
    assert ids("platform=android") == []
    assert len(ids("compliance=unknown")) == 3
    assert ids("compliance=compliant") == []  # nothing has been evaluated: never invented
    future = (clock.now() + timedelta(hours=1)).isoformat()
    assert ids(f"seen_since={future.replace('+', '%2B')}") == []
    assert len(ids(f"not_seen_since={future.replace('+', '%2B')}")) == 3
    page = client.get("/api/v1/devices?per_page=2&page=2", headers=bearer(admin_token)).get_json()
    assert page["total"] == 3 and page["page"] == 2 and len(page["items"]) == 1


def test_device_detail(client: Any, admin_token: str, tree: Any) -> None:
    body = client.get(f"/api/v1/devices/{tree.device_a.id}", headers=bearer(admin_token)).get_json()
    assert body["udid"] == tree.device_a.udid
    assert body["org_unit_path"] == "火消し消防本部 / 中央消防署 / 中央救急隊"
    assert body["pending_commands"] == 0
    assert body["compliance"] == "unknown"
    assert body["push_token_present"] is True


def test_queue_list_and_cancel_commands(
    client: Any, admin_token: str, tree: Any, session_factory: Any
) -> None:
    url = f"/api/v1/devices/{tree.device_a.id}/commands"
    queued = client.post(
        url,
        headers=bearer(admin_token),
        json={"request_type": "DeviceLock", "params": {"Message": "拾得者は消防本部へ"}},
    )
    assert queued.status_code == 201, queued.get_json()
    command = queued.get_json()
    assert command["status"] == "queued" and command["params"] == {"Message": "拾得者は消防本部へ"}
    bad = client.post(
        url,
        headers=bearer(admin_token),
        json={"request_type": "DeviceLock", "params": {"PhoneNumber": "call me"}},
    )
    assert _error(bad, 400, "invalid_input")["fields"] == {
        "params": {"PhoneNumber": ["must be a phone number (digits, + - ( ) and spaces)"]}
    }
    unknown = client.post(url, headers=bearer(admin_token), json={"request_type": "SelfDestruct"})
    assert "request_type" in _error(unknown, 400, "invalid_input")["fields"]
    erase = client.post(url, headers=bearer(admin_token), json={"request_type": "EraseDevice"})
    assert _error(erase, 403, "two_person_rule")["fields"] == {
        "request_type": ["needs the wipe approval workflow"]
    }

    history = client.get(url, headers=bearer(admin_token)).get_json()
    assert [c["uuid"] for c in history["items"]] == [command["uuid"]]
    listed = client.get(
        f"/api/v1/commands?status=queued&device_id={tree.device_a.id}", headers=bearer(admin_token)
    )
    assert [c["uuid"] for c in listed.get_json()["items"]] == [command["uuid"]]
    assert (
        client.get(f"/api/v1/commands/{command['uuid']}", headers=bearer(admin_token)).get_json()["uuid"]
        == command["uuid"]
    )

    cancelled = client.post(f"/api/v1/commands/{command['uuid']}/cancel", headers=bearer(admin_token))
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    _error(
        client.post(f"/api/v1/commands/{command['uuid']}/cancel", headers=bearer(admin_token)),
        409,
        "conflict",
    )

    with session_factory() as session:
        row = session.scalars(select(Command).where(Command.uuid == command["uuid"])).one()
        assert row.status == CommandStatus.CANCELLED
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.target_id == command["uuid"]).order_by(AuditEvent.id)
        ).all()
        assert [e.action for e in events] == ["command.queued", "command.cancelled"]
        assert all(e.actor.startswith("token:") and e.actor_role == "admin" and e.source_ip for e in events)

    types = client.get("/api/v1/command-types", headers=bearer(admin_token)).get_json()
    allowed = {t["request_type"]: t["allowed"] for t in types}
    assert allowed["DeviceLock"] is True and allowed["EraseDevice"] is False


def test_org_units_create_rename_move(client: Any, admin_token: str, tree: Any) -> None:
    created = client.post(
        "/api/v1/org-units",
        headers=bearer(admin_token),
        json={
            "kind": "unit",
            "unit_type": "pump",
            "name_ja": "北ポンプ隊",
            "parent_id": tree.station_b.id,
            "code": "B1",
        },
    )
    assert created.status_code == 201, created.get_json()
    unit = created.get_json()
    bad = client.post(
        "/api/v1/org-units", headers=bearer(admin_token), json={"kind": "station", "name_ja": "x"}
    )
    assert "parent_id" in _error(bad, 400, "invalid_input")["fields"]
    duplicate = client.post(
        "/api/v1/org-units",
        headers=bearer(admin_token),
        json={"kind": "unit", "name_ja": "y", "parent_id": tree.hq.id, "code": "B1"},
    )
    assert "code" in _error(duplicate, 400, "invalid_input")["fields"]
    moved = client.patch(
        f"/api/v1/org-units/{unit['id']}",
        headers=bearer(admin_token),
        json={"name_ja": "中央ポンプ隊", "parent_id": tree.station_a.id},
    )
    assert moved.status_code == 200 and moved.get_json()["parent_id"] == tree.station_a.id
    assert moved.get_json()["name_ja"] == "中央ポンプ隊"
    loop = client.patch(
        f"/api/v1/org-units/{tree.station_a.id}", headers=bearer(admin_token), json={"parent_id": unit["id"]}
    )
    assert "parent_id" in _error(loop, 400, "invalid_input")["fields"]
    listed = client.get("/api/v1/org-units", headers=bearer(admin_token)).get_json()
    assert listed[0]["id"] == tree.hq.id and len(listed) == 5


def test_enrollment_tokens(client: Any, admin_token: str, tree: Any) -> None:
    created = client.post(
        "/api/v1/enrollment-tokens",
        headers=bearer(admin_token),
        json={"org_unit_id": tree.unit_a1.id, "max_uses": 3},
    )
    assert created.status_code == 201, created.get_json()
    token = created.get_json()
    assert token["state"] == "active" and token["secret"] in token["enrollment_url"]
    assert token["qr_svg_url"].endswith("/qr.svg") and token["sheet_url"].endswith("/sheet")
    listed = client.get("/api/v1/enrollment-tokens", headers=bearer(admin_token)).get_json()
    assert [t["id"] for t in listed] == [token["id"]] and "secret" not in listed[0]
    revoked = client.post(
        f"/api/v1/enrollment-tokens/{token['id']}/revoke",
        headers=bearer(admin_token),
        json={"reason": "lost sheet"},
    )
    assert revoked.status_code == 200 and revoked.get_json()["state"] == "revoked"
    assert (
        client.post(
            f"/api/v1/enrollment-tokens/{token['id']}/revoke", headers=bearer(admin_token)
        ).status_code
        == 200
    )
    bad = client.post("/api/v1/enrollment-tokens", headers=bearer(admin_token), json={"org_unit_id": 424242})
    assert "org_unit_id" in _error(bad, 400, "invalid_input")["fields"]


def test_users_and_api_tokens(client: Any, admin_token: str, tree: Any, session_factory: Any) -> None:
    created = client.post(
        "/api/v1/users",
        headers=bearer(admin_token),
        json={"username": "tanaka", "role": "operator", "org_unit_id": tree.station_a.id},
    )
    assert created.status_code == 201, created.get_json()
    user = created.get_json()
    assert len(user["one_time_password"]) >= 12 and user["must_change_password"] is True
    again = client.post(
        "/api/v1/users", headers=bearer(admin_token), json={"username": "tanaka", "role": "operator"}
    )
    assert "username" in _error(again, 400, "invalid_input")["fields"]
    bad_role = client.post(
        "/api/v1/users", headers=bearer(admin_token), json={"username": "x1", "role": "dispatch"}
    )
    assert "role" in _error(bad_role, 400, "invalid_input")["fields"]
    patched = client.patch(
        f"/api/v1/users/{user['id']}", headers=bearer(admin_token), json={"disabled": True, "role": "auditor"}
    )
    assert (
        patched.status_code == 200
        and patched.get_json()["disabled"] is True
        and patched.get_json()["role"] == "auditor"
    )
    assert patched.get_json()["org_unit_id"] == tree.station_a.id  # not given: unchanged
    reset = client.post(f"/api/v1/users/{user['id']}/password-reset", headers=bearer(admin_token))
    assert reset.status_code == 200 and reset.get_json()["one_time_password"] != user["one_time_password"]

    made = client.post(
        "/api/v1/api-tokens",
        headers=bearer(admin_token),
        json={"name": "指令システム", "role": "dispatch", "expires_in_days": 30},
    )
    assert made.status_code == 201, made.get_json()
    dispatch = made.get_json()
    assert dispatch["token"].startswith(f"hks_{dispatch['id']}_")
    assert client.get("/api/v1/me", headers=bearer(dispatch["token"])).get_json()["role"] == "dispatch"
    listed = client.get("/api/v1/api-tokens", headers=bearer(admin_token)).get_json()
    assert {t["id"] for t in listed} >= {dispatch["id"]} and all("token" not in t for t in listed)
    assert (
        client.delete(f"/api/v1/api-tokens/{dispatch['id']}", headers=bearer(admin_token)).status_code == 200
    )
    _error(client.get("/api/v1/me", headers=bearer(dispatch["token"])), 401, "unauthenticated")
    with session_factory() as session:
        actions = set(session.scalars(select(AuditEvent.action)))
    assert {
        "user.created",
        "user.updated",
        "user.disabled",
        "user.password_reset",
        "api_token.created",
        "api_token.revoked",
    } <= actions


def test_token_past_expiry_gets_401(client: Any, tree: Any, session_factory: Any, frozen_clock: Any) -> None:
    with session_factory() as session:
        token = make_token(session, "dispatch", days=1)
    assert client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
    frozen_clock.advance(days=1, seconds=1)
    error = _error(client.get("/api/v1/devices", headers=bearer(token)), 401, "unauthenticated")
    assert "expired" in error["message"]


def test_audit_search_export_and_verify(
    client: Any, admin_token: str, tree: Any, session_factory: Any
) -> None:
    seal_all(session_factory)  # PostgreSQL: the app's sealer thread may not have run yet
    page = client.get(
        "/api/v1/audit/events?action=org_unit.&per_page=2", headers=bearer(admin_token)
    ).get_json()
    assert page["total"] == 4 and len(page["items"]) == 2
    assert all(e["action"].startswith("org_unit.") for e in page["items"])
    jsonl = client.get("/api/v1/audit/events/export?format=jsonl", headers=bearer(admin_token))
    assert jsonl.status_code == 200 and jsonl.content_type.startswith("application/x-ndjson")
    rows = [json.loads(line) for line in jsonl.get_data(as_text=True).splitlines()]
    # Rows come in the order they were written; on PostgreSQL the newest (this export's own
    # audit.exported) may not be sealed yet, and only at the end.
    sealed = [r for r in rows if r["seq"] is not None]
    assert rows[: len(sealed)] == sealed and len(sealed) >= 4
    assert [r["seq"] for r in sealed] == sorted(r["seq"] for r in sealed)
    assert all(sealed[i]["prev_hash"] == sealed[i - 1]["hash"] for i in range(1, len(sealed)))
    exported = client.get(
        "/api/v1/audit/events/export?format=csv&target_type=org_unit", headers=bearer(admin_token)
    )
    table = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert len(table) == 4 and json.loads(table[0]["details"])["kind"] == "hq"
    assert client.get("/api/v1/audit/verify", headers=bearer(admin_token)).get_json()["ok"] is True
    with session_factory() as session:
        victim = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "org_unit.created").order_by(AuditEvent.id)
        ).first()
        session.execute(
            text("UPDATE audit_events SET actor = 'user:mallory' WHERE id = :id"), {"id": victim.id}
        )
        session.commit()
    report = client.get("/api/v1/audit/verify", headers=bearer(admin_token)).get_json()
    assert report["ok"] is False and report["broken_id"] == victim.id and report["broken_seq"] == victim.seq
