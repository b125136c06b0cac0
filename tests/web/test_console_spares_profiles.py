"""Issue #19 items 2 and 3 in the console: mark and unmark spares on the device, continuity and
swap pages (audited, scoped, refused with the field named), and each tablet's profiles, desired
versus installed with the last verification and error, on the device page and the unit's page."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from mdm.ground import clock
from mdm.ground.models import AuditEvent, DeviceProfileState, Profile, SpareDevice
from tests.continuity.helpers import build_tree, tablet
from tests.web.helpers import csrf_of, login, make_user


def _client(app: Any, account: Any) -> Any:
    client = app.test_client()
    login(client, account)
    return client


def _section(html: str, element_id: str) -> str:
    match = re.search(rf'<(section|tr|li|div|table|form)[^>]*id="{element_id}".*?</\1>', html, re.S)
    assert match, f"no #{element_id} on the page"
    return match.group(0)


def test_spares_are_marked_and_unmarked_from_device_continuity_and_swap_pages(app, session_factory, settings):
    with session_factory() as session:
        tree = build_tree(session)
        shelf = tablet(session, tree.central, "棚の iPad")
        north_shelf = tablet(session, tree.north, "北 棚の iPad")
        in_unit = tablet(session, tree.ambulance3, "救急3 iPad")
        session.commit()
        ids = {"shelf": shelf.id, "north": north_shelf.id, "in_unit": in_unit.id, "a3": tree.ambulance3.id}
        central = tree.central.id
        admin = make_user(session, settings, "chief19", "admin")
        scoped = make_user(session, settings, "central19", "admin", org_unit_id=central)
        auditor = make_user(session, settings, "audit19", "auditor")
    client = _client(app, admin)

    # The swap page of a unit without spares offers the station's tablets to keep as spares.
    swap = client.get(f"/console/continuity/swap?unit_id={ids['a3']}").get_data(as_text=True)
    offer = _section(swap, "swap-mark-spare")
    assert "棚の iPad" in offer and "北 棚の iPad" not in offer and "救急3 iPad" not in offer
    marked = client.post(
        "/console/continuity/spares/mark",
        data={
            "device_id": ids["shelf"],
            "note": "2階 予備棚",
            "back": f"/console/continuity/swap?unit_id={ids['a3']}",
            "csrf_token": csrf_of(swap),
        },
    )
    assert marked.status_code == 302 and marked.headers["Location"].endswith(f"unit_id={ids['a3']}")
    swap = client.get(marked.headers["Location"]).get_data(as_text=True)
    assert "棚の iPad を予備機にしました" in swap and f'id="spare-{ids["shelf"]}"' in swap

    # The device page says so, and unmarks it.
    device_page = client.get(f"/console/devices/{ids['shelf']}").get_data(as_text=True)
    assert "2階 予備棚" in _section(device_page, "spare-card")
    unmarked = client.post(
        f"/console/continuity/spares/{ids['shelf']}/unmark",
        data={"back": f"/console/devices/{ids['shelf']}", "csrf_token": csrf_of(device_page)},
    )
    assert unmarked.status_code == 302
    device_page = client.get(f"/console/devices/{ids['shelf']}").get_data(as_text=True)
    assert "予備機から外しました" in device_page and 'id="mark-spare-form"' in device_page
    # A unit's tablet cannot be a spare: the page says why, a forged post names the field.
    unit_page = client.get(f"/console/devices/{ids['in_unit']}").get_data(as_text=True)
    assert 'id="mark-spare-form"' not in unit_page and "隊に所属する端末は不可" in unit_page
    refused = client.post(
        "/console/continuity/spares/mark",
        data={"device_id": ids["in_unit"], "csrf_token": csrf_of(unit_page)},
    )
    assert refused.status_code == 400 and "端末: 予備機にできるのは" in refused.get_data(as_text=True)
    for bad in ({}, {"device_id": "x1"}):
        answer = client.post(
            "/console/continuity/spares/mark", data={**bad, "csrf_token": csrf_of(unit_page)}
        )
        assert answer.status_code == 400 and "device_id" in answer.get_data(as_text=True)
    too_long = client.post(
        "/console/continuity/spares/mark",
        data={"device_id": ids["shelf"], "note": "x" * 256, "csrf_token": csrf_of(unit_page)},
    )
    assert too_long.status_code == 400 and "メモ: 255文字以内" in too_long.get_data(as_text=True)
    again = client.post(
        f"/console/continuity/spares/{ids['shelf']}/unmark", data={"csrf_token": csrf_of(unit_page)}
    )
    assert again.status_code == 409

    # The continuity page: mark per station, unmark per spare.
    page = client.get("/console/continuity").get_data(as_text=True)
    station_form = _section(page, f"mark-spare-{central}")
    assert "棚の iPad" in station_form
    client.post(
        "/console/continuity/spares/mark", data={"device_id": ids["north"], "csrf_token": csrf_of(page)}
    )
    page = client.get("/console/continuity").get_data(as_text=True)
    assert f'id="unmark-spare-{ids["north"]}"' in page

    # Scope: a station's administrator neither sees nor changes another station's tablet.
    local = _client(app, scoped)
    local_page = local.get("/console/continuity").get_data(as_text=True)
    assert f'id="unmark-spare-{ids["north"]}"' not in local_page
    outside = local.post(
        f"/console/continuity/spares/{ids['north']}/unmark", data={"csrf_token": csrf_of(local_page)}
    )
    assert outside.status_code == 404
    # Readers see spares but cannot change them.
    reader = _client(app, auditor)
    reader_page = reader.get("/console/continuity").get_data(as_text=True)
    assert "北 棚の iPad" in reader_page and "unmark-spare-" not in reader_page
    denied = reader.post(
        f"/console/continuity/spares/{ids['north']}/unmark", data={"csrf_token": csrf_of(reader_page)}
    )
    assert denied.status_code == 403

    with session_factory() as session:
        actions = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.action.like("continuity.spare_%"))
            .order_by(AuditEvent.id)
        ).all()
        assert actions == ["continuity.spare_marked", "continuity.spare_unmarked", "continuity.spare_marked"]
        assert session.scalars(select(SpareDevice.device_id)).all() == [ids["north"]]


def test_profiles_desired_versus_installed_on_the_device_and_unit_pages(app, session_factory, settings):
    with session_factory() as session:
        tree = build_tree(session)
        ipad = tablet(session, tree.ambulance3, "救急3 iPad")
        profile = Profile(
            identifier="jp.example.fd.myna",
            name_ja="マイナ救急",
            name_en="Myna",
            version=3,
            spec={},
        )
        session.add(profile)
        session.flush()
        verified = clock.now()
        session.add_all(
            [
                DeviceProfileState(
                    device_id=ipad.id,
                    identifier=profile.identifier,
                    profile_id=profile.id,
                    desired_version=3,
                    installed_version=2,
                    last_verified_at=verified,
                    last_error="MDM 4001: The profile is malformed",
                ),
                DeviceProfileState(
                    device_id=ipad.id,
                    identifier="com.vendor.vpn",
                    foreign_display_name="業者VPN",
                    last_verified_at=verified,
                ),
            ]
        )
        session.commit()
        device_id, unit_id = ipad.id, tree.ambulance3.id
        admin = make_user(session, settings, "chief19p", "admin")
        approver = make_user(session, settings, "approver19p", "approver")
    client = _client(app, admin)
    page = client.get(f"/console/devices/{device_id}").get_data(as_text=True)
    table = _section(page, "profile-state-table")
    assert "マイナ救急" in table and "端末が拒否" in table and "MDM 4001" in table
    assert "v3" in table and "v2" in table and "業者VPN" in table and "火消し以外が導入" in table
    # Worst first: the refused profile before the foreign one.
    assert table.index("マイナ救急") < table.index("業者VPN")
    unit = client.get(f"/console/continuity/units/{unit_id}/plan").get_data(as_text=True)
    assert "MDM 4001" in _section(unit, f"unit-profile-states-{device_id}")
    # Without profile.read (an approver) the section is not shown.
    other = _client(app, approver)
    assert 'id="profile-state-table"' not in other.get(f"/console/devices/{device_id}").get_data(as_text=True)


def test_dispatch_staff_read_readiness_and_nothing_else(app, session_factory, settings):
    with session_factory() as session:
        tree = build_tree(session)
        device = tablet(session, tree.ambulance3, "救急3 iPad")
        session.commit()
        device_id, unit_id = device.id, tree.ambulance3.id
        dispatcher = make_user(session, settings, "shirei19", "dispatcher")
        admin = make_user(session, settings, "chief19d", "admin")
    # An administrator can create the role in the console's user form.
    admin_client = _client(app, admin)
    users_page = admin_client.get("/console/users").get_data(as_text=True)
    assert 'value="dispatcher"' in users_page and "指令員" in users_page
    client = _client(app, dispatcher)
    start = client.get("/console/dashboard")
    assert start.status_code == 302 and start.headers["Location"].endswith("/console/continuity")
    board = client.get("/console/continuity").get_data(as_text=True)
    assert "救急3隊" in board and 'id="nav-continuity"' in board
    assert "/console/devices" not in board and "/console/hotline" not in board
    plan = client.get(f"/console/continuity/units/{unit_id}/plan")
    assert plan.status_code == 200
    for path in ("/console/devices", f"/console/devices/{device_id}", "/console/hotline", "/console/alerts"):
        assert client.get(path).status_code == 403, path
    changed = client.post(
        f"/console/continuity/units/{unit_id}/plan",
        data={"required_working": "2", "csrf_token": csrf_of(plan.get_data(as_text=True))},
    )
    assert changed.status_code == 403
