"""The wiring: what runs, inside and after a transaction, in every session of one application.

`wire` is the one place that connects services to each other and to SQLAlchemy's session events;
the app factory, the scheduler, the CLI and the test fixtures all call it for the session factory
they build. Importing a module of Hikeshi registers nothing (tests/core/test_wiring.py checks it);
everything is attached here, to the application's own session factory, never to SQLAlchemy's
global Session class: two applications in one process never hear each other's commits.

A commit of the application's session, in order:

1. before it commits: the devices whose inventory changed and the units the transaction touched
   are asked of the outbox, in one statement (mdm.ground.outbox_drain); compliance evaluation and
   the readiness recompute run right after the commit, in the drain's own transactions;
   Last, the cross-process signals (mdm.ground.signals) of the transaction are announced in it:
   on PostgreSQL a NOTIFY, which every node hears only once the transaction commits. Readiness
   announces its own (mdm.services.continuity.readiness, where its events are published); the
   devices with queued commands are announced here;
2. after it commits: the devices that got commands are woken (the in-process wake-up board, MQTT
   for Android agents, APNs for Apple devices), readiness changes are posted to the webhooks, and
   the transaction's audit events are sealed into the hash chain (mdm.ground.audit_sealer), and
   the outbox rows it wrote are drained (compliance, then readiness, whose own commit announces
   and posts its changes as above).
   On SQLite (one node) the signals are delivered inside this process after the commit; on
   PostgreSQL the process's listening connection hears every node's, its own included, and wakes
   the long polls of the devices named (`_wake_long_polls`) and the readiness streams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from commands import activation_lock, app_enforcement, results
from commands.context import CommandContext
from commands.inventory_refresh import queue_first_inventory
from enrollment.hooks import place_in_token_unit
from mdm.ground import outbox_drain
from mdm.ground.audit_sealer import AuditSealer
from mdm.ground.config import Settings
from mdm.ground.models import Device, OutboxTopic
from mdm.ground.outbox_drain import OutboxDrainer
from mdm.ground.push import PENDING_PUSHES
from mdm.ground.push.dispatcher import PushDispatcher
from mdm.ground.push.wakeups import signal_all_wakeups, signal_wakeups
from mdm.ground.signals import WAKE_DEVICES, Keys, SignalHub, announce, hub_for
from mdm.roots.amapi_sender import AmapiSender, ClientFactory, client_from_settings
from mdm.roots.commands import build_command_context
from mdm.services import devices, orgunits
from mdm.services.ade import enrollment as ade_enrollment
from mdm.services.apps import licensing as app_licensing
from mdm.services.apps import rules as app_rules
from mdm.services.apps import state as app_state
from mdm.services.compliance import profile_sources, sources
from mdm.services.compliance.evaluation import evaluate_after_inventory
from mdm.services.continuity import hooks as readiness_hooks
from mdm.services.continuity.webhooks import ReadinessNotifier
from mdm.services.inventory import events as inventory_events
from mdm.services.osupdates import compliance_source as os_update_source
from mdm.services.vpp.provider import VppLicenseProvider
from profiles import assignment

Listener = tuple[str, Callable[..., None]]


@dataclass
class Wiring:
    """What `wire` built for one session factory; keep it as long as the factory is used."""

    factory: sessionmaker[Session]
    settings: Settings | None
    # What every command needs beyond the Session; the root hands it to its doors and jobs, which
    # pass it on (`context=`) to whatever queues a command or records a result.
    commands: CommandContext
    dispatcher: PushDispatcher | None
    notifier: ReadinessNotifier | None
    # Every (event, listener) attached to the factory, in the order SQLAlchemy calls them.
    listeners: list[Listener] = field(default_factory=list)
    # Drains what commits asked of the outbox (compliance, readiness) right after them.
    drainer: OutboxDrainer | None = None
    # This process's cross-process signals for the factory's database (shared by every wiring of
    # that database in the process); the app factory starts its listening connection.
    signals: SignalHub | None = None
    # The Apps and Books license provider (one HTTP connection pool for the factory's life).
    licenses: VppLicenseProvider | None = None
    # Sends the commands queued for AMAPI-mode tablets right after their commit.
    amapi: AmapiSender | None = None
    # Seals each commit's audit events into the hash chain right after it.
    sealer: AuditSealer | None = None

    def close(self, timeout: float = 10.0) -> None:
        """Post what the last commits asked for (briefly), then stop the push channels."""
        if self.drainer is not None:
            self.drainer.wait_idle(timeout)
        if self.notifier is not None:
            self.notifier.wait_idle(timeout)
        if self.amapi is not None:
            self.amapi.wait_idle(timeout)
        # The background threads end here, not after their idle time: each holds the factory's
        # engine, and so its pool's connections, while it runs.
        if self.drainer is not None:
            self.drainer.close(timeout)
        if self.sealer is not None:
            self.sealer.close(timeout)
        if self.dispatcher is not None:
            self.dispatcher.close()
        if self.licenses is not None:
            self.licenses.close()


def _same(provider: VppLicenseProvider) -> VppLicenseProvider:
    return provider


def wire(
    factory: sessionmaker[Session],
    settings: Settings | None,
    *,
    seal_in_background: bool = True,
    amapi_client: ClientFactory | None = None,
) -> Wiring:
    """Connect the services for every session of `factory`.

    Without settings (a test that drives deliveries itself), only what runs inside the
    transaction is wired: nothing is sent after the commit and commands keep their defaults.
    Audit events are sealed into the chain after every commit: by a background thread in a
    long-lived process, in the committing thread where the process may exit at once (the CLI).
    """
    # The commands' context: the settings their results need (wipe certificates are signed at the
    # acknowledgement, queued commands get the configured lifetime) and the profile services.
    # Returned to the root; the hooks that queue commands get it bound here.
    commands = build_command_context(settings)

    # Services following each other, in the same transaction.
    # Apps (issue 21): licenses for App Store apps (the volume-purchase service plugs in its
    # provider here), required and blocked apps kept in force after each app answer.
    licenses = VppLicenseProvider(settings) if settings is not None else None
    app_licensing.LICENSE_PROVIDER.connect(
        factory, app_licensing.not_configured_provider if licenses is None else partial(_same, licenses)
    )
    app_state.MANAGED_APPS_REPORTED.connect(
        factory, partial(app_enforcement.after_managed_apps_reported, context=commands)
    )
    devices.IDENTITY_BOUND.connect(factory, place_in_token_unit, ade_enrollment.place_ade_device)
    devices.AWAITING_CONFIGURATION.connect(
        factory,
        # The unit's required apps are queued first: DeviceConfigured waits for them (issue 21).
        partial(app_enforcement.after_enrollment, context=commands),
        partial(ade_enrollment.begin_configuration, context=commands),
    )
    results.COMMAND_ANSWERED.connect(factory, partial(ade_enrollment.after_answer, context=commands))
    devices.DEVICE_ENROLLED.connect(
        factory,
        partial(assignment.install_on_enrollment, context=commands),
        partial(queue_first_inventory, context=commands),
        partial(activation_lock.after_enrollment, context=commands),
        partial(app_enforcement.after_enrollment, context=commands),
    )
    # Activation Lock follows the unit's setting (commands.activation_lock).
    orgunits.DEVICE_MOVED.connect(
        factory,
        partial(assignment.follow_moved_device, context=commands),
        partial(activation_lock.follow_moved_device, context=commands),
        partial(app_enforcement.follow_moved_device, context=commands),
    )
    orgunits.UNIT_MOVED.connect(
        factory,
        partial(assignment.follow_moved_unit, context=commands),
        partial(activation_lock.follow_moved_unit, context=commands),
        partial(app_enforcement.follow_moved_unit, context=commands),
    )
    sources.APP_POLICY_SOURCES.connect(
        factory, profile_sources.app_policy_from_assigned_profiles, app_policy_from_unit_rules
    )
    sources.EXPECTED_PROFILE_SOURCES.connect(factory, profile_sources.expected_profiles_from_assignments)
    sources.OS_UPDATE_TARGET_SOURCES.connect(factory, os_update_source.os_update_target)
    inventory_events.INVENTORY_UPDATED.connect(factory, evaluate_after_inventory)
    # After compliance: apps reported installed, blocked apps found, a managed-app list asked for.
    inventory_events.INVENTORY_UPDATED.connect(
        factory, partial(app_enforcement.after_inventory, context=commands)
    )
    # A device reporting that it is supervised gets its Activation Lock setting and escrow asked for.
    inventory_events.SUPERVISION_REPORTED.connect(
        factory, partial(activation_lock.after_supervision_reported, context=commands)
    )

    # After commit, in the drain's own transactions: compliance first, then readiness, which
    # reads the compliance it wrote (mdm.ground.outbox_drain).
    outbox_drain.connect(factory, [OutboxTopic.SETTLE_INVENTORY], inventory_events.settle_claimed)
    outbox_drain.connect(factory, readiness_hooks.READINESS_TOPICS, readiness_hooks.recompute_claimed)
    drainer = OutboxDrainer(factory, background=seal_in_background)

    listeners: list[Listener] = [
        # Before commit: the devices whose inventory changed and the units to recompute, asked of
        # the outbox; the drainer's listener writes them in one statement.
        ("before_commit", inventory_events.settle_before_commit),
        ("before_commit", readiness_hooks.ask_before_commit),
        ("after_flush", readiness_hooks.collect_changes),
        ("after_soft_rollback", readiness_hooks.forget_after_rollback),
        ("after_transaction_end", inventory_events.forget_at_transaction_end),
        # Before commit, last: the devices that got commands, signalled to every node.
        ("before_commit", _announce_wakeups),
    ]
    # Commands queued for AMAPI-mode tablets: an outbox row in the queueing commit, always; sent
    # right after it where the application knows how to reach Google (else by the scheduler's sweep).
    if amapi_client is None:
        amapi_client = (
            partial(client_from_settings, factory, settings) if settings is not None else _no_amapi_client
        )
    amapi = AmapiSender(factory, commands, amapi_client, background=seal_in_background)
    listeners += amapi.listeners() if settings is not None else [amapi.listeners()[0]]
    signals = hub_for(factory.kw["bind"].url)
    signals.subscribe(WAKE_DEVICES, _wake_long_polls)
    listeners += signals.listeners()
    dispatcher = notifier = None
    if settings is not None:
        # After commit: pushes and wake-ups, then readiness webhooks.
        dispatcher = PushDispatcher(factory, settings)
        notifier = ReadinessNotifier(factory, settings)
        listeners += [*dispatcher.listeners(), *notifier.listeners()]
    # After commit, last: the transaction's audit events sealed into the hash chain (PostgreSQL).
    sealer = AuditSealer(factory, background=seal_in_background)
    listeners += sealer.listeners()
    # Before commit, after every hook that asks: the outbox rows; after commit, last: their drain.
    listeners += drainer.listeners()
    for name, listener in listeners:
        event.listen(factory, name, listener)
    return Wiring(
        factory,
        settings,
        commands,
        dispatcher,
        notifier,
        listeners,
        drainer=drainer,
        signals=signals,
        licenses=licenses,
        amapi=amapi,
        sealer=sealer,
    )


def _no_amapi_client() -> None:
    return None


def app_policy_from_unit_rules(session: Session, device: Device) -> sources.AppPolicy | None:
    """The units' blocked apps (mdm.services.apps) as a compliance app policy source: adapted here,
    since the apps service sits below compliance's profile sources and cannot name them."""
    batch = sources.batch_of(session)
    if batch is not None:
        # Most fleets have no unit app rule at all: asked once for a batch, not once a device.
        any_rule = batch.reads.get(_ANY_UNIT_APP_RULE)
        if any_rule is None:
            any_rule = batch.reads[_ANY_UNIT_APP_RULE] = app_rules.any_rule(session)
        if not any_rule:
            return None
    blocked = app_rules.blocked_identifiers(session, device)
    return sources.AppPolicy(None, blocked) if blocked else None


_ANY_UNIT_APP_RULE = "hikeshi.apps.any_unit_rule"


def _announce_wakeups(session: Session) -> None:
    """The devices this transaction queued commands for, announced in it (mdm.ground.signals)."""
    if session.in_nested_transaction():
        return  # a savepoint released: the real commit announces
    device_ids = session.info.get(PENDING_PUSHES)
    if device_ids:
        announce(session, WAKE_DEVICES, device_ids)


def _wake_long_polls(keys: Keys) -> None:
    """A signal of queued commands, from any node: the long polls this process holds for those
    devices answer (all of them after a reconnection, when nobody knows what was missed)."""
    if keys is None:
        signal_all_wakeups()
    else:
        signal_wakeups(int(key) for key in keys if key.isdigit())
