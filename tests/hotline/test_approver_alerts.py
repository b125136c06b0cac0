"""Approvers are told (issue #19 item 7): a wipe request raises a critical alert that the existing
channels carry (a delivery queued to every enabled webhook, the alert e-mail), the queue lists it
in scope, and deciding acknowledges it with what happened."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import commands.incidents as hotline
from commands.incidents.approvers import WIPE_REQUESTED_ALERT, pending_wipe_requests
from mdm.ground.audit import Actor
from mdm.ground.models import Alert, Webhook, WebhookDelivery
from mdm.services.alerts.email import MAIL_SEVERITIES
from tests.hotline.support import give_identity
from tests.support.factories import make_device
from tests.support.people import person

OPERATOR = Actor("user:operator-tanaka", "operator", "192.0.2.10")
APPROVER = Actor("user:duty-officer-sato", "approver", "192.0.2.11")


@pytest.fixture
def incident(session, frozen_clock):
    device = make_device(session, supervised=True)
    device.device_name = "救急1 iPad"
    device.asset_tag = "FD-0042"
    give_identity(session, device)
    session.add(Webhook(name="指令センター", url="https://hooks.example.jp/x", secret_encrypted=b"-"))
    opened = hotline.open_incident(session, device, {"caller_name": "山田"}, actor=OPERATOR)
    session.commit()
    return opened


def test_a_wipe_request_alerts_by_webhook_and_mail_and_the_decision_settles_it(session, incident):
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR), reason="盗難")
    session.commit()
    alert = session.scalars(select(Alert).where(Alert.kind == WIPE_REQUESTED_ALERT)).one()
    assert alert.severity in MAIL_SEVERITIES and alert.acknowledged_at is None
    assert "救急1 iPad [FD-0042]" in alert.title and "operator-tanaka" in alert.title
    assert "消去の承認待ち" in alert.title and "user:" not in alert.title
    assert alert.details["incident_id"] == incident.id
    assert session.scalars(select(WebhookDelivery.alert_id)).all() == [alert.id]
    assert [i.id for i in pending_wipe_requests(session, None)] == [incident.id]
    assert pending_wipe_requests(session, frozenset({999_999})) == []

    hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    session.commit()
    session.refresh(alert)
    assert alert.acknowledged_by == APPROVER.name and "wipe approved" in (alert.acknowledge_comment or "")
    assert pending_wipe_requests(session, None) == []


def test_a_rejected_request_is_settled_too(session, incident):
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR))
    hotline.reject_wipe(session, incident, actor=person(session, APPROVER), reason="所在判明")
    session.commit()
    alert = session.scalars(select(Alert).where(Alert.kind == WIPE_REQUESTED_ALERT)).one()
    assert alert.acknowledged_at is not None and "所在判明" in (alert.acknowledge_comment or "")


def test_the_roles_mailed_for_approval_are_the_roles_that_may_approve():
    """commands.incidents.approvers cannot import web.rbac; this keeps its copy of the roles true."""
    from commands.incidents.approvers import APPROVING_ROLES
    from web.rbac import ROLE_PERMISSIONS, USER_ROLES, Permission

    may_approve = {role.value for role in USER_ROLES if Permission.WIPE_APPROVE in ROLE_PERMISSIONS[role]}
    assert set(APPROVING_ROLES) == may_approve
