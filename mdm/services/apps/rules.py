"""Each org unit's required and blocked apps, inherited down the tree like profiles.

A device follows the rules of its unit and of every unit above it; where two units name the same
app, the nearest one wins (a station may require an app its HQ blocks for everyone else). What a
found blocked app does (report, or report and remove) is also inherited: the nearest unit that
says wins, and nothing said anywhere is "report".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import (
    App,
    AppKind,
    AppRuleAction,
    BlockAction,
    Device,
    OrgUnit,
    UnitAppRule,
    UnitAppSettings,
)
from mdm.services.apps.catalog import AppCatalogError
from mdm.services.apps.configuration import check_configuration
from mdm.services.orgunits import unit_chains

_IDENTIFIER_MAX = 255


@dataclass(frozen=True)
class EffectiveRule:
    identifier: str
    action: str
    app: App | None
    configuration: dict[str, Any] | None
    unit_id: int


def unit_chain(session: Session, unit_id: int | None) -> list[int]:
    """The unit and those above it, nearest first."""
    if unit_id is None:
        return []
    # One recursive query up the tree, never the whole tree (a prefecture has 14,000 units).
    return [unit.id for unit in unit_chains(session, {unit_id}).get(unit_id, [])]


# Built once: every Android sync asks.
_RULES_ALONG = select(UnitAppRule).where(
    UnitAppRule.org_unit_id.in_(bindparam("chain", expanding=True)),
    UnitAppRule.platform == bindparam("platform"),
)


def effective_rules(
    session: Session, device: Device, chain: Sequence[int] | None = None
) -> dict[str, EffectiveRule]:
    """Identifier → the rule the device follows (empty outside any unit). `chain`: the device's
    unit and those above it, nearest first, when the caller has read it already (the Android
    sync shares one read of it between its settings)."""
    if chain is None:
        chain = unit_chain(session, device.org_unit_id)
    if not chain:
        return {}
    rank = {unit_id: index for index, unit_id in enumerate(chain)}
    rows = session.scalars(_RULES_ALONG, {"chain": list(chain), "platform": device.platform}).all()
    if not rows:
        return {}
    apps = {
        a.id: a for a in session.scalars(select(App).where(App.id.in_({r.app_id for r in rows if r.app_id})))
    }
    found: dict[str, EffectiveRule] = {}
    for row in sorted(rows, key=lambda r: (rank[r.org_unit_id], r.id), reverse=True):
        # Farthest first, so the nearest unit's rule is written last and wins.
        found[row.identifier] = EffectiveRule(
            row.identifier,
            row.action,
            apps.get(row.app_id) if row.app_id else None,
            row.configuration,
            row.org_unit_id,
        )
    return found


def block_action_for(session: Session, device: Device) -> str:
    for unit_id in unit_chain(session, device.org_unit_id):
        settings = session.get(UnitAppSettings, unit_id)
        if settings is not None and settings.block_action is not None:
            return settings.block_action
    return BlockAction.DEFAULT


def unit_rules(session: Session, unit: OrgUnit) -> list[UnitAppRule]:
    return list(
        session.scalars(
            select(UnitAppRule)
            .where(UnitAppRule.org_unit_id == unit.id)
            .order_by(UnitAppRule.action, UnitAppRule.identifier)
        )
    )


def require_app(
    session: Session, unit: OrgUnit, app: App, *, configuration: Mapping[str, Any] | None = None, actor: Actor
) -> UnitAppRule:
    """The unit's devices (and those below) must have `app`, configured with `configuration`."""
    clean = check_configuration(configuration) if configuration is not None else None
    if app.kind == AppKind.APP_STORE and app.itunes_store_id is None:
        raise AppCatalogError("this App Store app has no iTunesStoreID", "app_id")
    rule = _rule(session, unit, app.platform, app.identifier)
    before = None if rule is None else {"action": rule.action, "configuration": rule.configuration}
    if rule is None:
        rule = UnitAppRule(
            org_unit_id=unit.id,
            platform=app.platform,
            identifier=app.identifier,
            action=AppRuleAction.REQUIRED,
            created_by=actor.name,
        )
        session.add(rule)
    rule.action, rule.app_id, rule.configuration = AppRuleAction.REQUIRED, app.id, clean
    rule.created_at = clock.now()
    session.flush()
    record_event(
        session,
        actor,
        "app.required",
        "org_unit",
        unit.id,
        {
            "app_id": app.id,
            "identifier": app.identifier,
            "platform": app.platform,
            "configuration": clean,
            "before": before,
        },
    )
    return rule


def block_app(
    session: Session, unit: OrgUnit, platform: str, identifier: str, *, actor: Actor
) -> UnitAppRule:
    """The unit's devices (and those below) must not have `identifier` (in the catalog or not)."""
    if platform not in ("apple", "android"):
        raise AppCatalogError("platform must be apple or android", "platform")
    identifier = (identifier or "").strip()
    if not identifier or len(identifier) > _IDENTIFIER_MAX or any(c.isspace() for c in identifier):
        raise AppCatalogError("identifier must be a bundle identifier or package name", "identifier")
    rule = _rule(session, unit, platform, identifier)
    if rule is None:
        rule = UnitAppRule(
            org_unit_id=unit.id,
            platform=platform,
            identifier=identifier,
            action=AppRuleAction.BLOCKED,
            created_by=actor.name,
        )
        session.add(rule)
    app = session.scalars(select(App).where(App.platform == platform, App.identifier == identifier)).first()
    rule.action, rule.app_id, rule.configuration = AppRuleAction.BLOCKED, app.id if app else None, None
    rule.created_at = clock.now()
    session.flush()
    record_event(
        session, actor, "app.blocked", "org_unit", unit.id, {"identifier": identifier, "platform": platform}
    )
    return rule


def remove_rule(session: Session, rule: UnitAppRule, *, actor: Actor) -> None:
    record_event(
        session,
        actor,
        "app.rule_removed",
        "org_unit",
        rule.org_unit_id,
        {"identifier": rule.identifier, "platform": rule.platform, "action": rule.action},
    )
    session.delete(rule)
    session.flush()


def set_block_action(session: Session, unit: OrgUnit, action: str | None, *, actor: Actor) -> None:
    """`report`, `remove`, or None to inherit from the unit above."""
    if action is not None and action not in BlockAction.ALL:
        raise AppCatalogError("block_action must be report, remove or null (inherit)", "block_action")
    settings = session.get(UnitAppSettings, unit.id)
    before = settings.block_action if settings else None
    if settings is None:
        settings = UnitAppSettings(org_unit_id=unit.id, updated_by=actor.name)
        session.add(settings)
    settings.block_action, settings.updated_by, settings.updated_at = action, actor.name, clock.now()
    session.flush()
    record_event(
        session, actor, "app.block_action_changed", "org_unit", unit.id, {"old": before, "new": action}
    )


def own_block_action(session: Session, unit: OrgUnit) -> str | None:
    settings = session.get(UnitAppSettings, unit.id)
    return settings.block_action if settings else None


def _rule(session: Session, unit: OrgUnit, platform: str, identifier: str) -> UnitAppRule | None:
    return session.scalars(
        select(UnitAppRule).where(
            UnitAppRule.org_unit_id == unit.id,
            UnitAppRule.platform == platform,
            UnitAppRule.identifier == identifier,
        )
    ).first()


def any_rule(session: Session) -> bool:
    """Whether any unit has an app rule (most fleets have none: nothing to look up per device)."""
    return session.scalars(select(UnitAppRule.id).limit(1)).first() is not None


def blocked_identifiers(session: Session, device: Device) -> frozenset[str]:
    """The apps the device's units block (compliance reports them as unauthorized apps: the
    wiring turns this into an app policy source, so a blocked app found raises the same finding
    and alert as one a profile blocks, whatever the unit's block action also does)."""
    if not any_rule(session):
        return frozenset()
    return frozenset(
        i for i, r in effective_rules(session, device).items() if r.action == AppRuleAction.BLOCKED
    )
