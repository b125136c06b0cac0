"""The audit log as a Japanese auditor reads it: a Japanese label for every action the code
records, people's names, details as text; filters by date range, actor, device, incident and
action; the per-incident view; CSV and JSON export of exactly the filtered view; and refused
attempts (out-of-scope 404s, forbidden actions, forged forms) recorded without breaking the chain."""

from __future__ import annotations

import ast
import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import commands.incidents as hotline
from mdm.ground import clock
from mdm.ground.audit import Actor, verify_chain
from mdm.ground.models import AuditEvent, Device, User
from mdm.ground.models.command import CommandStatus
from tests.web.helpers import csrf_of, login, make_user
from web.console.audit import JST
from web.console.audit_labels import action_label
from web.console.hotline import STEPS

ROOT = Path(__file__).resolve().parents[2]
RECORDERS = {"record_event": 2, "AuditEntry": 0, "record_step": 3}


def _recorded_actions() -> set[str]:
    """Every action the code can record: literal names, both arms of a conditional, and the
    computed ones (a command's states, an incident's steps)."""
    found: set[str] = set()
    for package in ("mdm", "enrollment", "profiles", "commands", "web"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name not in RECORDERS or len(node.args) <= RECORDERS[name]:
                    continue
                arg = node.args[RECORDERS[name]]
                values = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
                prefix = "incident." if name == "record_step" else ""
                found |= {prefix + v.value for v in values if isinstance(v, ast.Constant)}
    found |= {f"command.{state}" for state in CommandStatus.ALL}
    found |= {f"incident.{step}" for step in STEPS}
    return found


def test_every_recorded_action_has_a_japanese_label(app: Any) -> None:
    actions = _recorded_actions()
    assert len(actions) > 90 and "incident.wipe_approved" in actions  # the scan itself works
    with app.test_request_context(headers={"Cookie": "hikeshi_lang=ja"}):
        unlabelled = sorted(a for a in actions if action_label(a) == a)
        assert unlabelled == []
        assert action_label("incident.wipe_requested") == "消去を申請"
        assert action_label("access.out_of_scope").startswith("拒否")


@pytest.fixture
def people(app: Any, session_factory: Any, settings: Any, tree: Any) -> dict[str, Any]:
    with session_factory() as session:
        made = {
            "auditor": make_user(session, settings, "kansa", "auditor"),
            "operator": make_user(session, settings, "tanaka", "operator", org_unit_id=tree.unit_a1.id),
            "approver": make_user(session, settings, "sato", "approver"),
        }
        for username, shown in (("kansa", "監査 花子"), ("tanaka", "田中 一郎"), ("sato", "佐藤 次郎")):
            session.scalars(select(User).where(User.username == username)).one().display_name = shown
        device = session.get(Device, tree.device_a.id)
        device.asset_tag = "AMB-0001"
        operator = session.scalars(select(User).where(User.username == "tanaka")).one()
        actor = Actor("user:tanaka", "operator", "192.0.2.7", user_id=operator.id)
        incident = hotline.open_incident(
            session, device, {"caller_name": "救急1隊 山田", "kind": "lost"}, actor=actor
        )
        hotline.request_wipe(session, incident, actor=actor, reason="車内に置き忘れ、見つからない")
        session.commit()
        made["incident_id"] = incident.id
    return made


def test_the_auditor_reads_japanese_names_and_text(app: Any, people: dict[str, Any], tree: Any) -> None:
    client = app.test_client()
    login(client, people["auditor"])
    html = client.get("/console/audit").get_data(as_text=True)
    assert "通報受付・事案を登録" in html and "消去を申請" in html  # labels, not incident.opened
    assert "田中 一郎 (tanaka)" in html  # a name, not user:tanaka
    assert "車内に置き忘れ" in html and "\\u" not in html  # details as text, no escapes
    assert "救急1 iPad (AMB-0001)" in html  # the device by name and asset tag
    assert "紛失受付オペレーター" in html  # the role, in Japanese


def test_filters_date_range_actor_device_incident_action(app: Any, people: dict[str, Any], tree: Any) -> None:
    client = app.test_client()
    login(client, people["auditor"])
    today = clock.now().astimezone(JST).date()

    def seqs(query: str) -> list[str]:
        response = client.get("/console/audit?" + query)
        assert response.status_code == 200, query
        return [
            line.split('data-action="')[1].split('"')[0]
            for line in response.get_data(as_text=True).splitlines()
            if 'data-action="' in line
        ]

    everything = seqs("")
    assert "incident.wipe_requested" in everything and "org_unit.created" in everything
    assert seqs(f"since={today}&until={today}") == everything
    assert seqs(f"until={today - timedelta(days=1)}") == []
    assert set(seqs("actor=user:tanaka")) == {"incident.opened", "incident.wipe_requested"}
    by_device = seqs("device=AMB-0001")
    assert "incident.opened" in by_device and "device.org_unit_assigned" in by_device
    assert "org_unit.created" not in by_device
    assert seqs(f"incident={people['incident_id']}") == ["incident.wipe_requested", "incident.opened"]
    assert set(seqs("action=incident.")) == {"incident.opened", "incident.wipe_requested"}
    assert seqs("action=incident.opened") == ["incident.opened"]
    bad = client.get(f"/console/audit?since={today}&until={today - timedelta(days=2)}")
    assert bad.status_code == 200 and "開始日が終了日より後" in bad.get_data(as_text=True)


def test_per_incident_view_and_export_of_the_filtered_view(
    app: Any, people: dict[str, Any], tree: Any
) -> None:
    client = app.test_client()
    login(client, people["auditor"])
    view = client.get(f"/console/audit/incidents/{people['incident_id']}")
    html = view.get_data(as_text=True)
    assert view.status_code == 200 and f"インシデント #{people['incident_id']} の監査記録" in html
    assert html.count('data-action="') == 2

    exported = client.get(f"/console/audit/export?format=csv&incident={people['incident_id']}")
    assert exported.status_code == 200
    text = exported.get_data(as_text=True)
    assert text.startswith("\ufeff")  # Excel reads UTF-8 only with the byte-order mark
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert [r["action"] for r in rows] == ["incident.opened", "incident.wipe_requested"]
    assert [r["action_label"] for r in rows] == ["通報受付・事案を登録", "消去を申請"]
    assert rows[0]["actor_name"] == "田中 一郎 (tanaka)"
    assert "車内に置き忘れ" in rows[1]["details"]

    as_json = client.get("/console/audit/export?format=json&actor=user:tanaka")
    events = json.loads(as_json.get_data(as_text=True))
    assert [e["action"] for e in events] == ["incident.opened", "incident.wipe_requested"]
    assert events[1]["prev_hash"] and events[1]["hash"]  # still re-verifiable outside Hikeshi


def test_refused_attempts_are_audited_and_the_chain_holds(
    app: Any, people: dict[str, Any], tree: Any, session_factory: Any
) -> None:
    operator = app.test_client()
    login(operator, people["operator"])  # scoped to 中央救急隊
    other_station = tree.device_b.id
    assert operator.get(f"/console/devices/{other_station}").status_code == 404
    assert operator.get("/console/devices/999999").status_code == 404  # exists nowhere: not audited
    assert operator.get("/console/users").status_code == 403
    page = operator.get("/console/devices").get_data(as_text=True)
    forged = operator.post(
        f"/console/devices/{tree.device_a.id}/labels", data={"labels": "x", "csrf_token": "0" * 64}
    )
    assert forged.status_code == 400
    foreign = operator.post(
        "/console/devices/commands",
        data={"device_id": str(tree.device_a.id), "request_type": "DeviceLock", "csrf_token": csrf_of(page)},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 400
    with session_factory() as session:
        refused = session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.action.in_(("access.out_of_scope", "access.forbidden", "security.csrf_rejected"))
            )
            .order_by(AuditEvent.seq)
        ).all()
        assert [(e.action, e.actor, e.target_type, e.target_id) for e in refused] == [
            ("access.out_of_scope", "user:tanaka", "device", str(other_station)),
            ("access.forbidden", "user:tanaka", None, None),
            ("security.csrf_rejected", "user:tanaka", None, None),
            ("security.csrf_rejected", "user:tanaka", None, None),
        ]
        assert refused[0].details["path"] == f"/console/devices/{other_station}"
        assert refused[3].details["reason"] == "request from another origin"
        assert verify_chain(session).ok

    auditor = app.test_client()
    login(auditor, people["auditor"])
    html = auditor.get("/console/audit?action=access.").get_data(as_text=True)
    assert "拒否: 権限範囲外へのアクセス" in html and "北1 iPad" in html
