"""Compliance is evaluated once per device per transaction, just before it commits, and before
anything else that reacts to the commit: the unit's readiness sees the finding of the same commit."""

from __future__ import annotations

import plistlib

from sqlalchemy import func, select

from commands.queue import enqueue_command
from commands.results import record_result
from mdm.ground.models import DeviceCompliance, Severity
from mdm.services.compliance.evaluation import device_compliance, open_findings
from mdm.services.continuity import current_readiness
from tests.continuity.helpers import build_tree, tablet
from tests.inventory.helpers import ADMIN, apps


def _report(session, device, request_type: str, body: dict) -> None:
    """One result as the command channel records it, without committing."""
    command = enqueue_command(session, device, request_type, None, actor=ADMIN, push=False)
    command.status = "sent"
    raw = plistlib.dumps({"UDID": device.udid, "CommandUUID": command.uuid, "Status": "Acknowledged", **body})
    assert record_result(session, device, plistlib.loads(raw), raw, actor=ADMIN) is command


def test_three_results_one_evaluation_at_commit_seen_by_readiness(session, frozen_clock):
    tree = build_tree(session)
    device = tablet(session, tree.ambulance3, "救急3 iPad")
    session.commit()
    evaluated_at = session.get(DeviceCompliance, device.id)
    before = evaluated_at.evaluated_at if evaluated_at is not None else None

    frozen_clock.advance(minutes=5)
    _report(session, device, "DeviceInformation", {"QueryResponses": {"OSVersion": "17.5"}})
    _report(session, device, "SecurityInfo", {"SecurityInfo": {"PasscodePresent": False}})
    _report(session, device, "InstalledApplicationList", apps(("jp.fire.triage", "Triage", "1")))
    # Not evaluated yet: nothing of this transaction's compliance exists before the commit.
    assert open_findings(session, device.id) == []
    session.commit()

    assert [f.rule for f in open_findings(session, device.id)] == ["passcode_missing"]
    assert device_compliance(session, device.id) == Severity.CRITICAL
    row = session.get(DeviceCompliance, device.id)
    assert row.evaluated_at == frozen_clock.current and row.evaluated_at != before
    assert session.scalar(select(func.count()).select_from(DeviceCompliance)) == 1
    # The readiness recompute of the same commit already counts the tablet as not compliant.
    session.expire_all()
    [ambulance3] = [u for u in current_readiness(session) if u.unit_name_ja == "救急3隊"]
    assert ambulance3.state == "critical"


def test_a_rolled_back_transaction_evaluates_nothing(session, frozen_clock):
    tree = build_tree(session)
    device = tablet(session, tree.ambulance3, "救急3 iPad")
    session.commit()
    device_id = device.id
    _report(session, device, "SecurityInfo", {"SecurityInfo": {"PasscodePresent": False}})
    session.rollback()
    session.commit()  # an empty transaction: nothing left over from the rolled-back one
    assert open_findings(session, device_id) == []
