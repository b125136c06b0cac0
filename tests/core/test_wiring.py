"""Explicit wiring (issue 17 item 4): importing Hikeshi registers nothing; each composition root
(app, scheduler, CLI) gets exactly what mdm.roots.wiring.wire attaches, on its own session factory."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from commands import activation_lock, app_enforcement, results
from commands.inventory_refresh import queue_first_inventory
from enrollment.hooks import place_in_token_unit
from mdm.roots.scheduler.fencing import fenced_factory
from mdm.roots.wiring import Wiring, app_policy_from_unit_rules, wire
from mdm.services import devices, orgunits
from mdm.services.ade import enrollment as ade_enrollment
from mdm.services.apps import licensing as app_licensing
from mdm.services.apps.state import MANAGED_APPS_REPORTED
from mdm.services.compliance import profile_sources, sources
from mdm.services.compliance.evaluation import evaluate_after_inventory
from mdm.services.inventory.events import INVENTORY_UPDATED, SUPERVISION_REPORTED
from mdm.services.vpp.provider import VppLicenseProvider
from profiles import assignment

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mdm", "enrollment", "profiles", "commands", "web")

# Runs in a fresh interpreter: counts the listeners on SQLAlchemy's global Session class before
# and after importing every product module, then proves the count would see one.
IMPORT_EVERYTHING = """
import importlib, json, sys
from sqlalchemy import event
from sqlalchemy.orm import Session

def listeners():
    probe = Session()
    return {name: len(getattr(probe.dispatch, name)) for name in Session.dispatch._event_names}

before = listeners()
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
after = listeners()
event.listen(Session, "after_commit", lambda session: None)
probed = listeners()["after_commit"] - after["after_commit"]
print(json.dumps({"before": before, "after": after, "probed": probed}))
"""


def product_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            # Alembic's scripts run only under Alembic; a __main__ runs the scheduler.
            if "migrations" in parts or parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_importing_every_module_attaches_nothing_to_the_global_session():
    modules = product_modules()
    assert len(modules) > 200 and "mdm.roots.wiring" in modules and "web.console.hotline" in modules
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING, json.dumps(modules)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["probed"] == 1  # the count does see a listener on the Session class
    added = {name: n for name, n in counts["after"].items() if n != counts["before"][name]}
    assert added == {}, f"importing Hikeshi attached Session listeners: {added}"


def _attached(factory: sessionmaker[Session]) -> dict[str, list[Any]]:
    probe = factory()
    try:
        return {
            name: list(getattr(probe.dispatch, name))
            for name in Session.dispatch._event_names
            if len(getattr(probe.dispatch, name))
        }
    finally:
        probe.close()


def _named(wiring: Wiring) -> dict[str, list[Any]]:
    named: dict[str, list[Any]] = {}
    for name, listener in wiring.listeners:
        named.setdefault(name, []).append(listener)
    return named


def test_an_app_has_exactly_the_listeners_its_wiring_names(app, settings, device_ca):
    from mdm import create_app

    wiring = app.extensions["hikeshi.wiring"]
    factory = app.extensions["hikeshi"].session_factory
    assert wiring.factory is factory
    named = _named(wiring)
    assert sorted(named) == [
        "after_commit",
        "after_flush",
        "after_soft_rollback",
        "after_transaction_end",
        "before_commit",
    ]
    assert _attached(factory) == named
    assert _attached(sessionmaker()) == {}  # nothing of it reaches sessions of other factories

    other = create_app(replace(settings, device_ca_file=str(device_ca.path)))
    try:
        other_wiring = other.extensions["hikeshi.wiring"]
        assert _attached(other.extensions["hikeshi"].session_factory) == _named(other_wiring)
        # Each app hears only its own commits: its pushes and webhooks, not the other's.
        mine = {id(fn) for fns in named.values() for fn in fns}
        theirs = {id(fn) for fns in _named(other_wiring).values() for fn in fns}
        # The dispatcher's two listeners, the notifier's, the audit sealer's, the outbox drainer's,
        # the AMAPI sender's.
        assert len(mine - theirs) == 6
        assert _attached(factory) == named
    finally:
        other.extensions["hikeshi"].dispatcher.close()
        other.extensions["hikeshi"].engine.dispose()


def _unbound(hooks, context):
    """The hooks as written: those that queue commands are connected with `context` bound."""
    return [
        hook.func if isinstance(hook, partial) and hook.keywords == {"context": context} else hook
        for hook in hooks
    ]


def test_the_hooks_are_those_the_wiring_connects(app):
    session = app.extensions["hikeshi"].session_factory()
    context = app.extensions["hikeshi"].commands
    assert context is app.extensions["hikeshi.wiring"].commands
    assert context.settings is app.extensions["hikeshi"].settings
    try:
        assert devices.IDENTITY_BOUND.hooks(session) == [place_in_token_unit, ade_enrollment.place_ade_device]
        assert _unbound(devices.AWAITING_CONFIGURATION.hooks(session), context) == [
            app_enforcement.after_enrollment,
            ade_enrollment.begin_configuration,
        ]
        assert _unbound(results.COMMAND_ANSWERED.hooks(session), context) == [ade_enrollment.after_answer]
        assert _unbound(devices.DEVICE_ENROLLED.hooks(session), context) == [
            assignment.install_on_enrollment,
            queue_first_inventory,
            activation_lock.after_enrollment,
            app_enforcement.after_enrollment,
        ]
        assert _unbound(orgunits.DEVICE_MOVED.hooks(session), context) == [
            assignment.follow_moved_device,
            activation_lock.follow_moved_device,
            app_enforcement.follow_moved_device,
        ]
        assert _unbound(orgunits.UNIT_MOVED.hooks(session), context) == [
            assignment.follow_moved_unit,
            activation_lock.follow_moved_unit,
            app_enforcement.follow_moved_unit,
        ]
        assert sources.APP_POLICY_SOURCES.hooks(session) == [
            profile_sources.app_policy_from_assigned_profiles,
            app_policy_from_unit_rules,
        ]
        assert sources.EXPECTED_PROFILE_SOURCES.hooks(session) == [
            profile_sources.expected_profiles_from_assignments
        ]
        assert _unbound(INVENTORY_UPDATED.hooks(session), context) == [
            evaluate_after_inventory,
            app_enforcement.after_inventory,
        ]
        assert _unbound(MANAGED_APPS_REPORTED.hooks(session), context) == [
            app_enforcement.after_managed_apps_reported
        ]
        # With settings, store-app licenses come from the Apps and Books service (one provider).
        [licenses] = app_licensing.LICENSE_PROVIDER.hooks(session)
        assert licenses() is app.extensions["hikeshi.wiring"].licenses
        assert isinstance(licenses(), VppLicenseProvider)
        assert _unbound(SUPERVISION_REPORTED.hooks(session), context) == [
            activation_lock.after_supervision_reported
        ]
    finally:
        session.close()
    with Session() as unwired:  # a session of no application runs no hook
        assert devices.DEVICE_ENROLLED.hooks(unwired) == []
        assert INVENTORY_UPDATED.hooks(unwired) == []


def test_the_scheduler_fenced_sessions_run_the_wiring_then_the_fence(clean_database, settings):
    from mdm.ground.db import make_session_factory

    factory = make_session_factory(clean_database)
    wiring = wire(factory, replace(settings, push_enabled=False))
    try:
        fenced = fenced_factory(factory, generation=1)
        attached = _attached(fenced)
        named = _named(wiring)
        assert attached["before_commit"][:-1] == named["before_commit"]
        assert attached["before_commit"][-1].__name__ == "_check_fence"
        assert {k: v for k, v in attached.items() if k != "before_commit"} == {
            k: v for k, v in named.items() if k != "before_commit"
        }
        with fenced() as session:
            assert _unbound(devices.DEVICE_ENROLLED.hooks(session), wiring.commands) == [
                assignment.install_on_enrollment,
                queue_first_inventory,
                activation_lock.after_enrollment,
                app_enforcement.after_enrollment,
            ]
    finally:
        wiring.close()


def test_the_cli_gets_the_same_wiring(settings):
    from mdm.roots.cli import Context

    ctx = Context()
    ctx._settings = replace(settings, push_enabled=False)
    try:
        factory = ctx.session_factory()
        wiring = ctx._wiring
        assert wiring is not None and wiring.factory is factory
        assert _attached(factory) == _named(wiring)
        assert sorted(_named(wiring)) == sorted(_attached(factory))
        assert ctx.dispatcher is wiring.dispatcher
    finally:
        ctx.close()
