"""AMAPI mode end to end against the simulator (issue 22, Done when): an AMAPI-mode unit goes
from QR token to enrolled device, policy applied, hotline lock, lost mode, two-person wipe and
wipe certificate, with every request valid against the discovery document (sim.violations).
Plus what must not go wrong on the way: a failed command shows as failed, a pending one as
pending, a redelivered notification changes nothing, a sender killed between Google's answer
and its commit sends once."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import commands.incidents as hotline
from commands.context import CommandContext
from commands.queue import enqueue_command
from mdm.ground import clock
from mdm.ground.amapi_client import AmapiClient
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.config import Settings
from mdm.ground.models import (
    Alert,
    AmapiCommandSend,
    AmapiDevice,
    AmapiNotification,
    AuditEvent,
    Command,
    CommandStatus,
    ComplianceFinding,
    Device,
    DeviceFacts,
    EnrollmentState,
    IncidentStatus,
    OrgUnit,
    OutboxEntry,
    OutboxTopic,
    UnitReadinessState,
    WipeCertificate,
)
from mdm.ground.outbox_drain import drain
from mdm.ground.secretbox import unseal
from mdm.services.amapi import credential, enterprise, mode, tokens
from mdm.services.amapi.client_factory import amapi_client_for
from mdm.services.amapi.commands import claim_next, record_operation, send_due
from mdm.services.amapi.notifications import apply_message, pull, reconcile_enterprise_devices
from mdm.services.amapi.operations import poll_operations
from mdm.services.orgunits import create_unit
from tests.support.amapi_sim import AmapiSimulator
from tests.support.people import person

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
APPROVER = Actor("duty-officer-sato", "approver", "192.0.2.11")
ADMIN = Actor("admin-suzuki", "admin", "192.0.2.12")
TOPIC = "projects/hikeshi-test/topics/amapi"


@pytest.fixture(scope="module")
def sim() -> Iterator[AmapiSimulator]:
    with AmapiSimulator() as simulator:
        yield simulator


@dataclass
class Bound:
    factory: sessionmaker[Session]
    settings: Settings
    client: AmapiClient
    context: CommandContext
    subscription: str
    enterprise: str
    unit_id: int
    token_value: str

    def pull(self) -> Any:
        return pull(self.factory, self.client, self.subscription, self.context)

    def send(self) -> Any:
        return send_due(self.factory, self.client, self.context, device_ids=self._amapi_devices())

    def client_copy(self) -> AmapiClient:
        """A client of its own for a job (which closes it)."""
        with self.factory() as s:
            client = amapi_client_for(s, self.settings)
        assert client is not None
        return client

    def _amapi_devices(self) -> list[int]:
        with self.factory() as s:
            return list(s.scalars(select(AmapiDevice.device_id)))


@pytest.fixture
def bound(sim: AmapiSimulator, session_factory: sessionmaker[Session], settings: Settings) -> Iterator[Bound]:
    """An enterprise bound through amapi-core's services, notifications on a pull subscription,
    one unit in AMAPI mode with its enrollment token (its policy patched)."""
    sim.violations.clear()
    amapi_settings = replace(settings, amapi_url=sim.api_url, pubsub_url=sim.pubsub_url)
    with session_factory() as s:
        credential.store_credential(
            s, amapi_settings, json.dumps(sim.service_account_info()).encode(), actor=SYSTEM
        )
        client = amapi_client_for(s, amapi_settings)
        assert client is not None
        enterprise.start_signup(s, client, callback_url="https://mdm.test.invalid/amapi/done", actor=SYSTEM)
        row = enterprise.enterprise_row(s)
        assert row is not None and row.signup_url_name
        token = sim.complete_signup(row.signup_url_name)
        enterprise.complete_signup(
            s, client, enterprise_token=token, display_name="火消し消防本部", actor=SYSTEM
        )
        subscription = sim.create_subscription(TOPIC)
        enterprise.set_notifications(s, client, topic=TOPIC, subscription=subscription, actor=SYSTEM)
        hq = create_unit(s, {"kind": "hq", "name_ja": "火消し消防本部", "code": "HQ"}, actor=SYSTEM)
        unit = create_unit(
            s,
            {
                "kind": "unit",
                "unit_type": "ambulance",
                "name_ja": "救急3隊",
                "code": "A3",
                "parent_id": hq.id,
            },
            actor=SYSTEM,
        )
        mode.set_android_mode(s, unit, "amapi", actor=SYSTEM)
        token_row = tokens.create_token(s, amapi_settings, client, unit, actor=SYSTEM)
        value = unseal(amapi_settings.secret_key, tokens.VALUE_PURPOSE, token_row.value_sealed).decode()
        enterprise_name = row.enterprise_name
        unit_id = unit.id
        s.commit()
    assert enterprise_name is not None
    yield Bound(
        session_factory,
        amapi_settings,
        client,
        CommandContext(settings=amapi_settings),
        subscription,
        enterprise_name,
        unit_id,
        value,
    )
    client.close()


def _enrolled(bound: Bound, sim: AmapiSimulator, serial: str = "R52T30ABCDE") -> tuple[str, int]:
    name = sim.enroll_device(bound.token_value, serial=serial)
    bound.pull()
    with bound.factory() as s:
        device_id = s.scalars(select(AmapiDevice.device_id).where(AmapiDevice.amapi_name == name)).one()
    return name, device_id


def _incident(s: Session, device_id: int) -> Any:
    device = s.get(Device, device_id)
    return hotline.open_incident(s, device, {"caller_name": "救急3隊 山田"}, actor=person(s, OPERATOR))


def test_qr_token_to_wipe_certificate(sim: AmapiSimulator, bound: Bound) -> None:
    name, device_id = _enrolled(bound, sim)
    drain(bound.factory)  # compliance after the inventory, then readiness, as after any commit
    with bound.factory() as s:
        device = s.get(Device, device_id)
        assert device.org_unit_id == bound.unit_id  # the token's unit, not anything the tablet said
        assert device.enrollment_state == EnrollmentState.ENROLLED and device.platform == "android"
        assert device.serial_number == "R52T30ABCDE" and device.model == "SM-T636B"
        assert device.is_supervised is True  # fully managed: lost mode is available
        # Readiness follows, as for every platform: the unit has a working tablet.
        assert s.get(UnitReadinessState, bound.unit_id).working == 1
        amapi = s.scalars(select(AmapiDevice).where(AmapiDevice.device_id == device_id)).one()
        policy = sim.policies[amapi.policy_name]
        # The unit's policy is applied, at the version AMAPI holds.
        assert amapi.applied_policy_version == int(policy["version"])
        incident = _incident(s, device_id)
        outcome = hotline.lock_now(s, incident, actor=person(s, OPERATOR))
        assert outcome.lost_mode and outcome.command.request_type == "EnableLostMode"
        incident_id, lock_uuid = incident.id, outcome.command.uuid
        s.commit()
        # Durable before anything is sent: the queueing commit wrote the device's outbox row.
        waiting = s.scalars(select(OutboxEntry).where(OutboxEntry.topic == OutboxTopic.AMAPI_SEND)).all()
        assert [row.subject_id for row in waiting] == [device_id]

    sent = bound.send()
    assert sent.issued == 1
    with bound.factory() as s:
        lock = s.scalars(select(Command).where(Command.uuid == lock_uuid)).one()
        assert lock.status == CommandStatus.SENT  # issued, the tablet has not run it: pending
        assert s.scalars(select(OutboxEntry).where(OutboxEntry.topic == OutboxTopic.AMAPI_SEND)).all() == []
    issued = [r for r in sim.requests if r.path.endswith(f"{name}:issueCommand")]
    assert [r.body["type"] for r in issued] == ["START_LOST_MODE"]
    lost = issued[0].body["startLostModeParams"]
    assert lost["lostMessage"]["defaultMessage"]  # the unit's lock-screen text
    assert lost["lostOrganization"]["defaultMessage"] == hotline.service.DEFAULT_FOOTNOTE

    sim.run_device(name)  # the tablet comes online, enters lost mode: COMMAND notification
    bound.pull()
    with bound.factory() as s:
        lock = s.scalars(select(Command).where(Command.uuid == lock_uuid)).one()
        assert lock.status == CommandStatus.ACKNOWLEDGED
        incident = hotline.get_incident(s, incident_id)
        assert incident.status == IncidentStatus.LOCKED and incident.lost_mode
        facts = s.get(DeviceFacts, device_id)
        assert facts.is_lost_mode_enabled is True  # the status report shows lost mode

        hotline.request_wipe(s, incident, actor=person(s, OPERATOR), reason="盗難の可能性")
        with pytest.raises(hotline.SamePersonError):
            hotline.approve_wipe(s, incident, actor=person(s, OPERATOR))
        hotline.approve_wipe(s, incident, actor=person(s, APPROVER), context=bound.context)
        s.commit()

    bound.send()
    assert sim.wiped[name] == {
        "wipeDataFlags": ["PRESERVE_RESET_PROTECTION_DATA", "WIPE_EXTERNAL_STORAGE", "WIPE_ESIMS"],
        "wipeReasonMessage": "盗難の可能性",
    }
    with bound.factory() as s:
        incident = hotline.get_incident(s, incident_id)
        assert incident.status == IncidentStatus.WIPED
        assert s.get(Device, device_id).enrollment_state == EnrollmentState.RETIRED
    drain(bound.factory)
    with bound.factory() as s:
        assert s.get(UnitReadinessState, bound.unit_id).working == 0  # the wiped tablet no longer counts
        incident = hotline.get_incident(s, incident_id)
        certificate = s.scalars(
            select(WipeCertificate).where(WipeCertificate.incident_id == incident_id)
        ).one()
        wipe = json.loads(certificate.content)["wipe"]
        assert wipe["issued_through"] == "android_management_api"
        assert wipe["wipe_data_flags"] == [
            "PRESERVE_RESET_PROTECTION_DATA",
            "WIPE_EXTERNAL_STORAGE",
            "WIPE_ESIMS",
        ]
        assert wipe["issued_at"] is not None
        # Only what is known: the API accepted the deletion; the tablet's confirmation is not claimed.
        assert wipe["acknowledged_at"] is None and wipe["device_confirmed"] is None
        assert wipe["requested_by"] == OPERATOR.name and wipe["approved_by"] == APPROVER.name
        page = hotline_certificate_page(certificate.content)
        assert "devices.delete" in page and "確認していません" in page
    assert sim.violations == []


def hotline_certificate_page(content: bytes) -> str:
    from commands.wipe_certificate import render_certificate_html

    return render_certificate_html(content)


def test_a_failed_command_shows_as_failed_and_a_pending_one_as_pending(
    sim: AmapiSimulator, bound: Bound
) -> None:
    name, device_id = _enrolled(bound, sim, serial="R52T30FAIL1")
    with bound.factory() as s:
        incident = _incident(s, device_id)
        lock = hotline.lock_now(s, incident, actor=person(s, OPERATOR)).command
        # RELINQUISH_OWNERSHIP only works on a work profile: this fully managed tablet refuses it.
        relinquish = enqueue_command(
            s, s.get(Device, device_id), "RelinquishOwnership", {}, actor=person(s, ADMIN)
        )
        uuids = (lock.uuid, relinquish.uuid)
        incident_id = incident.id
        s.commit()
    sim.fail_next_command(name, code="API_LEVEL", message="lost mode needs a newer Android")
    bound.send()
    poll_operations(bound.factory, bound.client, bound.context)
    with bound.factory() as s:
        statuses = [s.scalars(select(Command.status).where(Command.uuid == u)).one() for u in uuids]
        assert statuses == [CommandStatus.SENT, CommandStatus.SENT]  # not done: pending, not success
    sim.run_device(name)
    later = clock.now() + timedelta(minutes=2)  # the next poll's turn
    clock.set_clock(lambda: later)
    try:
        poll_operations(
            bound.factory, bound.client, bound.context
        )  # settled by the poll, not the notification
    finally:
        clock.set_clock(None)
    with bound.factory() as s:
        lock = s.scalars(select(Command).where(Command.uuid == uuids[0])).one()
        relinquish = s.scalars(select(Command).where(Command.uuid == uuids[1])).one()
        assert lock.status == CommandStatus.ERROR
        assert lock.error_chain[0]["ErrorCode"] == "API_LEVEL"
        assert relinquish.status == CommandStatus.ERROR
        assert s.get(AmapiCommandSend, relinquish.id).error_code == "MANAGEMENT_MODE"
        # Still managed: a refused relinquish does not unenroll the tablet.
        assert s.get(Device, device_id).enrollment_state == EnrollmentState.ENROLLED
        incident = hotline.get_incident(s, incident_id)
        assert incident.status != IncidentStatus.LOCKED
        assert "lock_failed" in [step.action for step in incident.steps]
    bound.pull()  # the COMMAND notifications arrive after the poll: nothing changes
    assert sim.violations == []


def test_a_redelivered_notification_changes_nothing(sim: AmapiSimulator, bound: Bound) -> None:
    name = sim.enroll_device(bound.token_value, serial="R52T30REDEL")
    answer = bound.client.pubsub("POST", f"{bound.subscription}:pull", {"maxMessages": 10})
    messages = [item["message"] for item in answer["receivedMessages"]]
    assert [m["attributes"]["notificationType"] for m in messages] == ["ENROLLMENT", "STATUS_REPORT"]
    # A puller applied them and died before acknowledging: Pub/Sub delivers them again.
    for message in messages:
        with bound.factory() as s:
            assert apply_message(s, message, bound.context) is not None
            s.commit()

    def counts() -> tuple[int, ...]:
        with bound.factory() as s:
            return tuple(
                s.scalar(select(func.count()).select_from(model))
                for model in (Device, AmapiDevice, AmapiNotification, AuditEvent, ComplianceFinding)
            )

    before = counts()
    sim.advance(sim.ack_deadline_seconds + 1)
    again = bound.pull()
    assert again.duplicates == 2 and again.applied == 0
    assert counts() == before
    with bound.factory() as s:
        assert (
            s.scalar(select(func.count()).select_from(AmapiDevice).where(AmapiDevice.amapi_name == name)) == 1
        )
    sim.advance(sim.ack_deadline_seconds + 1)
    assert bound.pull().received == 0  # acknowledged this time
    assert sim.violations == []


def test_a_status_report_with_unknown_keys_and_partial_fields_is_accepted(
    sim: AmapiSimulator, bound: Bound
) -> None:
    name, device_id = _enrolled(bound, sim, serial="R52T30PART1")
    with bound.factory() as s:
        facts = s.get(DeviceFacts, device_id)
        known = (facts.passcode_present, s.get(Device, device_id).serial_number)
    future = {
        "name": name,
        "lastStatusReportTime": (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "softwareInfo": {"androidVersion": "15", "aNewField": "x"},
        "somethingGoogleAddsLater": {"nested": [1, 2]},
    }
    message = {
        "messageId": "partial-1",
        "attributes": {"notificationType": "STATUS_REPORT"},
        "data": base64.b64encode(json.dumps(future).encode()).decode(),
    }
    with bound.factory() as s:
        outcome = apply_message(s, message, bound.context)
        s.commit()
    assert outcome is not None and outcome.outcome == "applied"
    with bound.factory() as s:
        device = s.get(Device, device_id)
        assert device.os_version == "15"
        facts = s.get(DeviceFacts, device_id)
        # What the report left out stays what was known; nothing is turned into "no".
        assert (facts.passcode_present, device.serial_number) == known
    garbage = {"messageId": "garbage-1", "attributes": {"notificationType": "STATUS_REPORT"}, "data": "@@"}
    with bound.factory() as s:
        dropped = apply_message(s, garbage, bound.context)
        s.commit()
    assert dropped is not None and dropped.outcome == "dropped"


def test_an_unknown_token_is_refused_and_usage_logs_are_dropped_with_a_reason(
    sim: AmapiSimulator, bound: Bound
) -> None:
    stranger = {
        "name": f"{bound.enterprise}/devices/stranger1",
        "enrollmentTokenName": f"{bound.enterprise}/enrollmentTokens/not-ours",
        "enrollmentTokenData": json.dumps({"org_unit_id": bound.unit_id}),
        "hardwareInfo": {"serialNumber": "EVIL1"},
    }
    usage = {"device": f"{bound.enterprise}/devices/x", "events": []}
    with bound.factory() as s:
        for i, (kind, data) in enumerate((("ENROLLMENT", stranger), ("USAGE_LOGS", usage))):
            message = {
                "messageId": f"m{i}",
                "attributes": {"notificationType": kind},
                "data": base64.b64encode(json.dumps(data).encode()).decode(),
            }
            apply_message(s, message, bound.context)
        s.commit()
    with bound.factory() as s:
        rows = {n.notification_type: n for n in s.scalars(select(AmapiNotification))}
        assert rows["ENROLLMENT"].outcome == "refused"
        assert rows["USAGE_LOGS"].outcome == "dropped" and "retention" in (rows["USAGE_LOGS"].reason or "")
        assert s.scalar(select(func.count()).select_from(Device).where(Device.serial_number == "EVIL1")) == 0


def test_a_sender_killed_after_googles_answer_sends_once(sim: AmapiSimulator, bound: Bound) -> None:
    name, device_id = _enrolled(bound, sim, serial="R52T30KILL1")
    with bound.factory() as s:
        device = s.get(Device, device_id)
        command = enqueue_command(s, device, "DeviceLock", {}, actor=person(s, OPERATOR))
        command_id = command.id
        s.commit()

    # The sender claims the command (committed), Google issues it, and the process dies before
    # recording the operation.
    with bound.factory() as s:
        claim = claim_next(s, device_id, bound.context)
        s.commit()
    assert claim is not None
    bound.client.call("POST", f"{name}:issueCommand", body={"type": "LOCK"})
    # The outbox row is still there; a fresh sender runs as soon as the claim's lease is over.
    moved = clock.now() + timedelta(minutes=5)
    clock.set_clock(lambda: moved)
    try:
        first = bound.send()
        second = bound.send()
    finally:
        clock.set_clock(None)
    assert first.adopted == 1 and first.issued == 0 and second.issued == 0
    assert len([r for r in sim.requests if r.path.endswith(f"{name}:issueCommand")]) == 1
    with bound.factory() as s:
        send = s.get(AmapiCommandSend, command_id)
        assert send.operation_name and send.attempts == 2
    # Run twice without a crash: the recorded operation is the fence, nothing is sent again.
    with bound.factory() as s:
        assert record_operation(s, command_id, {"name": "elsewhere", "done": False}, bound.context) is False
    assert sim.violations == []


def test_devices_list_reconciles_a_lost_enrollment(sim: AmapiSimulator, bound: Bound) -> None:
    name = sim.enroll_device(bound.token_value, serial="R52T30LOST1")
    # The notifications were lost (acknowledged by nobody who applied them).
    answer = bound.client.pubsub("POST", f"{bound.subscription}:pull", {"maxMessages": 10})
    ack_ids = [item["ackId"] for item in answer["receivedMessages"]]
    bound.client.pubsub("POST", f"{bound.subscription}:acknowledge", {"ackIds": ack_ids})
    result = reconcile_enterprise_devices(bound.factory, bound.client, bound.enterprise, page_size=1)
    assert result["applied"] >= 1
    with bound.factory() as s:
        amapi = s.scalars(select(AmapiDevice).where(AmapiDevice.amapi_name == name)).one()
        assert s.get(Device, amapi.device_id).org_unit_id == bound.unit_id
        assert s.get(OrgUnit, bound.unit_id) is not None
    assert sim.violations == []


def test_the_scheduler_sweeps_what_no_process_sent_and_pulls(sim: AmapiSimulator, bound: Bound) -> None:
    from mdm.roots.scheduler.context import JobContext
    from mdm.roots.scheduler.jobs import run_job

    name, device_id = _enrolled(bound, sim, serial="R52T30SWEEP")
    with bound.factory() as s:
        command = enqueue_command(s, s.get(Device, device_id), "RestartDevice", {}, actor=person(s, ADMIN))
        command_uuid = command.uuid
        s.commit()  # the process that committed died before sending: only the outbox row is left
    ctx = JobContext(
        bound.factory, bound.settings, "test-scheduler", commands=bound.context, amapi_client=lambda: None
    )
    assert run_job(ctx, "amapi_send").details == {"skipped": "no enterprise bound"}
    ctx = replace(ctx, amapi_client=lambda: bound.client_copy())
    assert run_job(ctx, "amapi_send").details["issued"] == 0  # the committing process's turn first
    later = clock.now() + timedelta(minutes=1)
    clock.set_clock(lambda: later)
    try:
        assert run_job(ctx, "amapi_send").details["issued"] == 1
        sim.run_device(name)
        pulled = run_job(ctx, "amapi_pull")
        assert pulled.outcome == "ok" and pulled.details["applied"] >= 1
        assert pulled.details["reconciled"]["devices"] >= 1
        assert run_job(ctx, "amapi_pull").details == {"skipped": "not due"}
    finally:
        clock.set_clock(None)
    with bound.factory() as s:
        assert (
            s.scalars(select(Command.status).where(Command.uuid == command_uuid)).one()
            == CommandStatus.ACKNOWLEDGED
        )
    issued = [r.body for r in sim.requests if r.path.endswith(f"{name}:issueCommand")]
    assert [body["type"] for body in issued] == ["REBOOT"]  # sent once, by the sweep
    assert sim.violations == []


def test_a_second_tablet_claiming_an_enrolled_serial_is_refused_not_merged(
    sim: AmapiSimulator, bound: Bound
) -> None:
    _, first = _enrolled(bound, sim, serial="R52T30TWIN1")
    twin = sim.enroll_device(bound.token_value, serial="R52T30TWIN1")
    report = bound.pull()
    assert report.refused == 1 and report.unacked == 0  # refused and acknowledged, not retried for ever
    with bound.factory() as s:
        serials = s.scalars(select(Device.id).where(Device.serial_number == "R52T30TWIN1")).all()
        assert serials == [first]
        assert s.scalars(select(AmapiDevice).where(AmapiDevice.amapi_name == twin)).first() is None
        alert = s.scalars(select(Alert).where(Alert.kind == "amapi.enrollment_refused")).one()
        assert str(first) in alert.title


def test_a_tablet_offline_for_an_hour_still_enters_lost_mode(sim: AmapiSimulator, bound: Bound) -> None:
    """AMAPI drops a command the tablet has not run within its `duration` (ten minutes unless
    given): a lost tablet is often off. Lost mode never expires in Hikeshi, so it must not at Google
    either; a restart, which does expire, carries what is left of its own lifetime."""
    name, device_id = _enrolled(bound, sim, serial="R52T30OFF01")
    with bound.factory() as s:
        incident = _incident(s, device_id)
        lock = hotline.lock_now(s, incident, actor=person(s, OPERATOR)).command
        restart = enqueue_command(s, s.get(Device, device_id), "RestartDevice", {}, actor=person(s, ADMIN))
        lock_uuid, restart_expires = lock.uuid, restart.expires_at
        s.commit()
    bound.send()
    durations = {
        r.body["type"]: int(r.body["duration"].rstrip("s"))
        for r in sim.requests
        if r.path.endswith(f"{name}:issueCommand")
    }
    assert durations["START_LOST_MODE"] >= 365 * 86400
    assert restart_expires is not None
    left = (restart_expires - clock.now()).total_seconds()
    assert left - 120 <= durations["REBOOT"] <= left

    sim.advance(3600)  # the tablet is off for an hour, then comes online
    sim.run_device(name)
    bound.pull()
    with bound.factory() as s:
        assert s.scalars(select(Command.status).where(Command.uuid == lock_uuid)).one() == (
            CommandStatus.ACKNOWLEDGED
        )
        assert s.get(DeviceFacts, device_id).is_lost_mode_enabled is True
    assert sim.violations == []
