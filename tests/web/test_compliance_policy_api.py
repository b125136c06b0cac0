"""The compliance policy ("alert rules", issue #15 item 9) over the API, the console's org unit
page and `hikeshi units compliance-policy`: own/inherited/effective values, bounds and formats
refused with 400 naming the field, unit scope, audit, and the rule set here is the one evaluation
applies (a tablet below the new minimum OS gets a finding and an alert)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mdm.ground.models import Alert, AuditEvent, CompliancePolicy, Device
from mdm.roots.cli import main
from mdm.services.compliance.evaluation import evaluate_fleet, open_findings
from tests.inventory.helpers import answer
from tests.web.conftest import tree  # noqa: F401
from tests.web.helpers import bearer, csrf_of, login, make_token, make_user

DEFAULT_URL = "/api/v1/compliance-policy/default"


def _url(unit_id: int) -> str:
    return f"/api/v1/org-units/{unit_id}/compliance-policy"


def _tokens(session_factory: Any, *roles: str) -> dict[str, dict[str, str]]:
    with session_factory() as session:
        return {role: bearer(make_token(session, role)) for role in roles}


def _events(session_factory: Any) -> list[AuditEvent]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "compliance.policy_changed")
                .order_by(AuditEvent.id)
            )
        )


def test_set_get_inherit_and_audit(client, tree, session_factory):  # noqa: F811
    tokens = _tokens(session_factory, "admin", "approver", "dispatch")
    station, unit = tree.station_a.id, tree.unit_a1.id
    fresh = client.get(_url(unit), headers=tokens["approver"])
    assert fresh.status_code == 200
    body = fresh.get_json()
    assert body["org_unit_id"] == unit
    assert set(body["own"].values()) == {None}
    assert body["effective"] == body["inherited"]
    assert body["effective"]["offline_limit_hours"] == 24 and body["effective"]["minimum_os_version"] is None

    # The fleet default, then a station value: the company below inherits both.
    put = client.put(DEFAULT_URL, headers=tokens["admin"], json={"offline_limit_hours": 48})
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["org_unit_id"] is None and put.get_json()["own"]["offline_limit_hours"] == 48
    assert put.get_json()["inherited"]["offline_limit_hours"] == 24  # the built-in default
    put = client.put(
        _url(station),
        headers=tokens["admin"],
        json={"minimum_os_version": "17.4", "require_supervision": True, "certificate_warning_days": 60},
    )
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["own"]["minimum_os_version"] == "17.4"
    below = client.get(_url(unit), headers=tokens["approver"]).get_json()
    assert set(below["own"].values()) == {None}
    assert below["effective"]["minimum_os_version"] == "17.4"
    assert below["effective"]["require_supervision"] is True
    assert below["effective"]["offline_limit_hours"] == 48

    # The company sets its own value, which wins over the station's; inherited still shows the station's.
    mine = client.put(
        _url(unit),
        headers=tokens["admin"],
        json={"minimum_os_version": "17.5.1", "minimum_android_security_patch": "2025-06-05"},
    ).get_json()
    assert mine["own"]["minimum_os_version"] == "17.5.1"
    assert mine["inherited"]["minimum_os_version"] == "17.4"
    assert mine["effective"]["minimum_os_version"] == "17.5.1"
    assert mine["effective"]["minimum_android_security_patch"] == "2025-06-05"
    # null: inherit again; fields not named stay as they were.
    back = client.put(_url(unit), headers=tokens["admin"], json={"minimum_os_version": None}).get_json()
    assert back["own"]["minimum_os_version"] is None and back["effective"]["minimum_os_version"] == "17.4"
    assert back["own"]["minimum_android_security_patch"] == "2025-06-05"

    default = client.get(DEFAULT_URL, headers=tokens["approver"]).get_json()
    assert (
        default["effective"]["offline_limit_hours"] == 48
        and default["effective"]["minimum_os_version"] is None
    )

    events = _events(session_factory)
    assert [(e.target_id, e.details) for e in events] == [
        (None, {"offline_limit_hours": 48}),
        (
            str(station),
            {"minimum_os_version": "17.4", "require_supervision": True, "certificate_warning_days": 60},
        ),
        (str(unit), {"minimum_os_version": "17.5.1", "minimum_android_security_patch": "2025-06-05"}),
        (str(unit), {"minimum_os_version": None}),
    ]
    assert all(e.actor.endswith("admin test token") for e in events)

    # Dispatch systems read neither; only an administrator writes.
    assert client.get(_url(unit), headers=tokens["dispatch"]).status_code == 403
    assert (
        client.put(_url(unit), headers=tokens["approver"], json={"offline_limit_hours": 1}).status_code == 403
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"offline_limit_hours": 0}, "offline_limit_hours"),
        ({"offline_limit_hours": 8761}, "offline_limit_hours"),
        ({"offline_limit_hours": "24"}, "offline_limit_hours"),
        ({"offline_limit_hours": 2.5}, "offline_limit_hours"),
        ({"inventory_interval_hours": 0}, "inventory_interval_hours"),
        ({"inventory_interval_hours": 9000}, "inventory_interval_hours"),
        ({"certificate_warning_days": 0}, "certificate_warning_days"),
        ({"certificate_warning_days": 3651}, "certificate_warning_days"),
        ({"require_supervision": 1}, "require_supervision"),
        ({"require_supervision": "yes"}, "require_supervision"),
        ({"minimum_os_version": "17"}, "minimum_os_version"),
        ({"minimum_os_version": "seventeen"}, "minimum_os_version"),
        ({"minimum_os_version": "17.4.1.2"}, "minimum_os_version"),
        ({"minimum_os_version": "17.4\n"}, "minimum_os_version"),
        ({"minimum_os_version": 17.4}, "minimum_os_version"),
        ({"minimum_android_security_patch": "2025-13-01"}, "minimum_android_security_patch"),
        ({"minimum_android_security_patch": "20250605"}, "minimum_android_security_patch"),
        ({"minimum_android_security_patch": "June 2025"}, "minimum_android_security_patch"),
        ({"colour": "red"}, "colour"),
        ({}, "_schema"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_nothing_is_written(
    client,
    tree,  # noqa: F811
    session_factory,
    body,
    field,
):
    tokens = _tokens(session_factory, "admin")
    for url in (_url(tree.station_a.id), DEFAULT_URL):
        # A valid field beside the bad one is not written either (except for the empty body itself).
        sent = body if field == "_schema" else {"certificate_warning_days": 10, **body}
        answer_ = client.put(url, headers=tokens["admin"], json=sent)
        assert answer_.status_code == 400, answer_.get_json()
        error = answer_.get_json()["error"]
        assert error["code"] == "invalid_input" and field in error["fields"], error
    with session_factory() as session:
        assert session.scalars(select(CompliancePolicy)).all() == []
    assert _events(session_factory) == []


def test_scoped_admin_changes_only_its_subtree_and_not_the_fleet_default(
    client,
    tree,  # noqa: F811
    session_factory,
):
    with session_factory() as session:
        scoped = bearer(make_token(session, "admin", org_unit_id=tree.station_a.id))
    assert (
        client.put(_url(tree.unit_a1.id), headers=scoped, json={"offline_limit_hours": 12}).status_code == 200
    )
    for method in ("get", "put"):
        other = getattr(client, method)(
            _url(tree.station_b.id), headers=scoped, json={"offline_limit_hours": 1}
        )
        assert other.status_code == 404, other.get_json()
    refused = client.put(DEFAULT_URL, headers=scoped, json={"offline_limit_hours": 1})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    with session_factory() as session:
        rows = {row.org_unit_id: row.offline_limit_hours for row in session.scalars(select(CompliancePolicy))}
    assert rows == {tree.unit_a1.id: 12}


def test_a_new_minimum_os_raises_a_finding_and_an_alert(client, tree, session_factory, frozen_clock):  # noqa: F811
    tokens = _tokens(session_factory, "admin")
    with session_factory() as session:
        device = session.get(Device, tree.device_a.id)
        assert device is not None
        answer(session, device, "DeviceInformation", {"QueryResponses": {"OSVersion": "17.2"}})
        session.commit()
        evaluate_fleet(session)
        session.commit()
        assert "os_outdated" not in {f.rule for f in open_findings(session, device.id)}

    put = client.put(_url(tree.station_a.id), headers=tokens["admin"], json={"minimum_os_version": "17.4"})
    assert put.status_code == 200
    with session_factory() as session:
        evaluate_fleet(session)
        session.commit()
        findings = [f for f in open_findings(session, tree.device_a.id) if f.rule == "os_outdated"]
        assert len(findings) == 1
        alerts = session.scalars(select(Alert).where(Alert.finding_id == findings[0].id)).all()
        assert len(alerts) == 1 and alerts[0].device_id == tree.device_a.id
        # The other station's tablet is not held to station A's rule.
        assert "os_outdated" not in {f.rule for f in open_findings(session, tree.device_b.id)}


def test_console_org_unit_page_shows_and_sets_the_rules(app, tree, session_factory, settings):  # noqa: F811
    with session_factory() as session:
        admin_account = make_user(session, settings, "chief", "admin")
        approver_account = make_user(session, settings, "duty", "approver")
    admin = app.test_client()
    login(admin, admin_account)
    page = f"/console/org-units/{tree.station_a.id}"
    html = admin.get(page).get_data(as_text=True)
    assert 'id="compliance-policy-form"' in html and "コンプライアンスルール（アラート）" in html
    form = {
        "minimum_os_version": "17.4",
        "offline_limit_hours": "４８",  # full-width digits, as a Japanese IME types them
        "require_supervision": "yes",
        "inventory_interval_hours": "",
        "certificate_warning_days": "",
        "minimum_android_security_patch": "2025-06-05",
    }
    saved = admin.post(page + "/compliance-policy", data={**form, "csrf_token": csrf_of(html)})
    assert saved.status_code == 302
    html = admin.get(page).get_data(as_text=True)
    assert "コンプライアンスルールを保存しました。" in html
    with session_factory() as session:
        row = session.scalars(select(CompliancePolicy)).one()
        assert (
            row.org_unit_id,
            row.minimum_os_version,
            row.offline_limit_hours,
            row.require_supervision,
        ) == (
            tree.station_a.id,
            "17.4",
            48,
            True,
        )
        assert row.inventory_interval_hours is None and row.minimum_android_security_patch == "2025-06-05"

    # The company below shows the station's values as inherited and applied.
    below = admin.get(f"/console/org-units/{tree.unit_a1.id}").get_data(as_text=True)
    assert (
        '<tr data-field="minimum_os_version"><td>最低iOS/iPadOSバージョン</td>'
        '<td><span class="muted">（なし）</span></td><td>17.4</td><td><strong>17.4</strong></td></tr>'
        in below
    )

    # Bad values: nothing saved, the field named in Japanese.
    for bad, text in (
        ({"offline_limit_hours": "0"}, "オフライン上限は1〜8760の整数"),
        ({"minimum_os_version": "abc"}, "最低OSバージョンは 17.4 や 17.4.1 の形式"),
        ({"minimum_android_security_patch": "2025-02-30"}, "YYYY-MM-DD の日付"),
        ({"require_supervision": "maybe"}, "監視モードは"),
    ):
        admin.post(
            page + "/compliance-policy", data={**form, **bad, "csrf_token": csrf_of(admin.get(page).data)}
        )
        assert text in admin.get(page).get_data(as_text=True)
    # Without the CSRF token: refused.
    assert admin.post(page + "/compliance-policy", data={**form, "offline_limit_hours": "1"}).status_code in (
        400,
        403,
    )
    with session_factory() as session:
        assert session.scalars(select(CompliancePolicy)).one().offline_limit_hours == 48
        assert len(_events(session_factory)) == 1

    # Blank makes a field inherit again.
    admin.post(
        page + "/compliance-policy",
        data={**form, "offline_limit_hours": "", "csrf_token": csrf_of(admin.get(page).data)},
    )
    with session_factory() as session:
        assert session.scalars(select(CompliancePolicy)).one().offline_limit_hours is None
    assert _events(session_factory)[-1].details == {"offline_limit_hours": None}

    # Approvers see the rules but cannot change them.
    approver = app.test_client()
    login(approver, approver_account)
    html = approver.get(page).get_data(as_text=True)
    assert 'id="compliance-policy"' in html and 'id="compliance-policy-form"' not in html
    refused = approver.post(page + "/compliance-policy", data={**form, "csrf_token": csrf_of(html)})
    assert refused.status_code == 403


@pytest.fixture
def cli(settings: Any, monkeypatch: Any) -> Any:
    monkeypatch.setenv("HIKESHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("HIKESHI_SECRET_KEY", settings.secret_key)
    # The interval the scheduler's inventory refresh uses for units without one: shown as inherited.
    monkeypatch.setenv("HIKESHI_INVENTORY_INTERVAL_HOURS", "6")
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args))


def test_cli_shows_sets_and_inherits(cli, tree, session_factory):  # noqa: F811
    shown = cli("units", "compliance-policy", "A1")
    assert shown.exit_code == 0, shown.output
    assert "offline_limit_hours: 24 (inherited)" in shown.output
    assert "inventory_interval_hours: 6 (inherited)" in shown.output

    station = cli(
        "units",
        "compliance-policy",
        "ST-A",
        "--minimum-os",
        "17.4",
        "--require-supervision",
        "--offline-limit-hours",
        "12",
    )
    assert station.exit_code == 0, station.output
    assert (
        "minimum_os_version: 17.4 (own)" in station.output
        and "require_supervision: yes (own)" in station.output
    )
    below = cli("units", "compliance-policy", "A1")
    assert "minimum_os_version: 17.4 (inherited)" in below.output

    fleet = cli("units", "compliance-policy", "--default", "--certificate-warning-days", "90")
    assert fleet.exit_code == 0, fleet.output
    assert "certificate_warning_days: 90 (own)" in fleet.output
    assert "certificate_warning_days: 90 (inherited)" in cli("units", "compliance-policy", "A1").output

    back = cli(
        "units", "compliance-policy", "ST-A", "--inherit", "minimum_os_version", "--no-require-supervision"
    )
    assert back.exit_code == 0, back.output
    assert (
        "minimum_os_version: - (inherited)" in back.output and "require_supervision: no (own)" in back.output
    )

    for args, text in (
        (("ST-A", "--offline-limit-hours", "0"), "--offline-limit-hours"),
        (("ST-A", "--minimum-os", "seventeen"), "minimum_os_version"),
        (("ST-A", "--minimum-android-patch", "2025-02-30"), "minimum_android_security_patch"),
        (("ST-A", "--inherit", "colour"), "--inherit"),
        (("ST-A", "--minimum-os", "17.4", "--inherit", "minimum_os_version"), "not both"),
        (("NOPE",), "no org unit"),
        (("ST-A", "--default"), "exactly one"),
        ((), "exactly one"),
    ):
        refused = cli("units", "compliance-policy", *args)
        assert refused.exit_code != 0 and text in refused.output, (args, refused.output)

    with session_factory() as session:
        rows = {r.org_unit_id: r for r in session.scalars(select(CompliancePolicy))}
        assert set(rows) == {tree.station_a.id, None}
        station_row = rows[tree.station_a.id]
        assert (
            station_row.minimum_os_version,
            station_row.require_supervision,
            station_row.offline_limit_hours,
        ) == (
            None,
            False,
            12,
        )
    events = _events(session_factory)
    assert len(events) == 3 and all(e.actor.startswith("cli:") for e in events)
    as_json = cli("units", "compliance-policy", "A1", "--json")
    assert '"offline_limit_hours": 12' in as_json.output


def test_openapi_states_the_bounds(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    props = spec["components"]["schemas"]["CompliancePolicyUpdate"]["properties"]
    assert (
        props["offline_limit_hours"]["maximum"] == 8760
        and props["certificate_warning_days"]["maximum"] == 3650
    )
    assert props["minimum_os_version"]["pattern"] == r"^\d{1,3}\.\d{1,3}(\.\d{1,3})?$"
    assert "/api/v1/compliance-policy/default" in spec["paths"]
