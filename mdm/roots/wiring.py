"""The wiring: what runs, inside and after a transaction, in every session of one application.

`wire` is the one place that connects services to each other and to SQLAlchemy's session events;
the app factory, the scheduler, the CLI and the test fixtures all call it for the session factory
they build. Importing a module of Hikeshi registers nothing (tests/core/test_wiring.py checks it);
everything is attached here, to the application's own session factory, never to SQLAlchemy's
global Session class: two applications in one process never hear each other's commits.

A commit of the application's session, in order:

1. before it commits: the devices whose inventory changed are settled (compliance evaluated,
   findings and alerts written), then the units the transaction touched get their readiness
   recomputed, all in the same transaction;
2. after it commits: the devices that got commands are woken (the in-process wake-up board, MQTT
   for Android agents, APNs for Apple devices), readiness changes are posted to the webhooks, and
   the transaction's audit events are sealed into the hash chain (mdm.ground.audit_sealer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from commands.context import CommandContext
from commands.inventory_refresh import queue_first_inventory
from enrollment.hooks import place_in_token_unit
from mdm.ground.audit_sealer import AuditSealer
from mdm.ground.config import Settings
from mdm.ground.push.dispatcher import PushDispatcher
from mdm.roots.commands import build_command_context
from mdm.services import devices, orgunits
from mdm.services.compliance import profile_sources, sources
from mdm.services.compliance.evaluation import evaluate_after_inventory
from mdm.services.continuity import hooks as readiness_hooks
from mdm.services.continuity.webhooks import ReadinessNotifier
from mdm.services.inventory import events as inventory_events
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

    def close(self, timeout: float = 10.0) -> None:
        """Post what the last commits asked for (briefly), then stop the push channels."""
        if self.notifier is not None:
            self.notifier.wait_idle(timeout)
        if self.dispatcher is not None:
            self.dispatcher.close()


def wire(
    factory: sessionmaker[Session], settings: Settings | None, *, seal_in_background: bool = True
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
    devices.IDENTITY_BOUND.connect(factory, place_in_token_unit)
    devices.DEVICE_ENROLLED.connect(
        factory,
        partial(assignment.install_on_enrollment, context=commands),
        partial(queue_first_inventory, context=commands),
    )
    orgunits.DEVICE_MOVED.connect(factory, partial(assignment.follow_moved_device, context=commands))
    orgunits.UNIT_MOVED.connect(factory, partial(assignment.follow_moved_unit, context=commands))
    sources.APP_POLICY_SOURCES.connect(factory, profile_sources.app_policy_from_assigned_profiles)
    sources.EXPECTED_PROFILE_SOURCES.connect(factory, profile_sources.expected_profiles_from_assignments)
    inventory_events.INVENTORY_UPDATED.connect(factory, evaluate_after_inventory)

    listeners: list[Listener] = [
        # Before commit, first: inventory settled (compliance) before readiness reads it.
        ("before_commit", inventory_events.settle_before_commit),
        ("before_commit", readiness_hooks.recompute_before_commit),
        ("after_flush", readiness_hooks.collect_changes),
        ("after_soft_rollback", readiness_hooks.forget_after_rollback),
        ("after_transaction_end", inventory_events.forget_at_transaction_end),
    ]
    dispatcher = notifier = None
    if settings is not None:
        # After commit: pushes and wake-ups, then readiness webhooks.
        dispatcher = PushDispatcher(factory, settings)
        notifier = ReadinessNotifier(factory, settings)
        listeners += [*dispatcher.listeners(), *notifier.listeners()]
    # After commit, last: the transaction's audit events sealed into the hash chain (PostgreSQL).
    listeners += AuditSealer(factory, background=seal_in_background).listeners()
    for name, listener in listeners:
        event.listen(factory, name, listener)
    return Wiring(factory, settings, commands, dispatcher, notifier, listeners)
