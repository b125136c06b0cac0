"""One sync of an agent: who it is (identity.authenticate), then inventory in, results in, policy
(if changed) and commands out; and the start of a long poll. Never commits; the handler does."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from commands.context import CommandContext
from commands.delivery import NOT_LOOKED
from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.models import DeviceMessage, EnrollmentState
from mdm.services.android_channel.agent import PROTOCOL_VERSION
from mdm.services.android_channel.agent_commands import record_results, take_commands
from mdm.services.android_channel.identity import AuthenticatedDevice, Credential, authenticate
from mdm.services.android_channel.location_reporting import without_inventory_location
from mdm.services.android_channel.policy import policy_answer, unit_chain, unit_reports_location
from mdm.services.android_channel.wake import wake_channels
from mdm.services.devices import device_actor, touch
from mdm.services.inventory.android import apply_android_inventory
from mdm.services.inventory.facts import facts_for


def sync(
    session: Session,
    settings: Settings,
    credential: Credential,
    raw: bytes,
    read: Callable[[], dict[str, Any]],
    *,
    source_ip: str | None,
    context: CommandContext,
    inventory_hint: bool = False,
) -> dict[str, Any]:
    """Authenticate the request, then apply it and build the answer.

    `read` validates the body (protocol.SyncRequestSchema): it is called only once the sender is
    known, so nothing of an unauthenticated request is looked at beyond its JSON. Results are
    recorded with the fingerprint of the certificate the request was authenticated with, which a
    wipe certificate depends on (commands.incidents.wipe_identity). `inventory_hint`: the body,
    not yet validated, carries an inventory: the identity read brings the facts it merges into
    (only the shape of a read; nothing the body says is trusted before it is validated)."""
    # The device row first: the sync settles results and claims commands after (commands.delivery).
    authed = authenticate(session, settings, credential, lock_device=True, with_facts=inventory_hint)
    device = authed.device
    data = read()
    actor = device_actor(device.udid or "", source_ip)
    touch(session, device)  # in steps of devices.SEEN_RESOLUTION: a quick sync writes nothing for it
    # The unit's chain, read once and only if asked: the location setting (the inventory and the
    # stored message need it, when the device's last policy is not current), the OS update policy
    # and the app rules are each inherited along it.
    chain = cache(lambda: unit_chain(session, device))
    inventory = data.get("inventory")
    reports = data.get("results") or []
    if inventory is not None or reports:
        reports_location = unit_reports_location(
            device,
            generation=authed.policy_generation,
            secret_key=settings.secret_key,
            public_url=settings.public_url,
            chain=chain,
        )
        # Kept as received, like Apple check-ins: what the device said is evidence; but not a
        # position the unit does not collect. A sync that reports nothing says only that the agent
        # was there, which `touch` records: not kept (every poll of every tablet, issue 18).
        stored = raw if reports_location else without_inventory_location(raw)
        # A statement, not an object to flush: nothing reads the row back in the request.
        message = {"device_id": device.id, "message_type": "AndroidSync", "source_ip": source_ip}
        session.execute(
            _STORE_MESSAGE, {**message, "raw": DeviceMessage.stored_raw(stored), "received_at": clock.now()}
        )
    if inventory is not None:
        if not reports_location:
            # Sent where the unit's policy does not allow it (an old or faulty agent): not kept.
            inventory = {key: value for key, value in inventory.items() if key != "location"}
        apply_android_inventory(session, device, inventory)
        facts = facts_for(session, device.id)
        kept = facts.raw_device_information
        if not reports_location and isinstance(kept, dict) and "location" in kept:
            # Nor a position kept from when the unit still allowed it.
            facts.raw_device_information = {key: value for key, value in kept.items() if key != "location"}
    identity = authed.certificate.fingerprint_sha256
    not_now = record_results(session, device, reports, actor=actor, identity=identity, context=context)
    answer: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "device_id": device.id}
    if device.enrollment_state == EnrollmentState.ENROLLED:
        version, policy = policy_answer(
            session,
            device,
            agent_has=data.get("policy_version"),
            generation=authed.policy_generation,
            secret_key=settings.secret_key,
            public_url=settings.public_url,
            chain=chain,
        )
        answer["policy_version"] = version
        if policy is not None:
            answer["policy"] = policy.body()
        answer["commands"] = take_commands(
            session,
            device,
            skip=not_now,
            actor=actor,
            context=context,
            secret_key=settings.secret_key,
            **_what_waited(authed, reports),
        )
    else:
        # The device was just retired (its wipe was acknowledged in this very sync): nothing more.
        answer["commands"] = []
        answer["enrollment_state"] = device.enrollment_state
    answer["poll_interval_seconds"] = settings.android_poll_interval_seconds
    answer["wake"] = wake_channels(settings, device.id)
    answer["server_time"] = clock.now().isoformat(timespec="seconds").replace("+00:00", "Z")
    return answer


_STORE_MESSAGE = insert(cast(Table, DeviceMessage.__table__))


def _what_waited(authed: AuthenticatedDevice, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """What the identity read found waiting, for `take_commands`: the queue is read only when that
    may not be all there is to hand over."""
    waiting = authed.waiting
    if not reports:
        return {"looked_ahead": waiting, "looked_ahead_alone": not authed.more_waiting}
    # The results settled their commands (or put them off: skipped in this sync); follow-ups
    # they queued are seen by deliver_next_commands itself. Nothing waited, or only a command
    # answered now: nothing is left to hand over. Otherwise the queue says what is.
    if waiting is None or (not authed.more_waiting and waiting.uuid in {r["command_id"] for r in reports}):
        return {"looked_ahead": None}
    return {"looked_ahead": NOT_LOOKED}


def start_wait(session: Session, settings: Settings, credential: Credential) -> int:
    """A long poll begins: the agent is authenticated and seen now. Returns the device's id, all
    the handler keeps while it waits (it holds no session then)."""
    device = authenticate(session, settings, credential).device
    touch(session, device)
    return device.id
