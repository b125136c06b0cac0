"""Audit trail: record events in the caller's transaction, seal them into the hash chain, verify it.

Every sealed row carries its place in the chain (`seq`) and the hash of the row before it;
changing, inserting or deleting a sealed row behind the application's back breaks the chain at
that row, and `verify_chain` names it.

On PostgreSQL an event is written unsealed in the caller's transaction and sealed right after
its commit, in commit order, by `seal_pending` (mdm.ground.audit_sealer runs it). Extending the
chain needs the previous row's hash, so it is serialised; doing it after commit keeps that one
short lock out of every request's transaction (holding it through COMMIT serialised all writers,
issue 18). SQLite serialises writers itself, so there events are sealed where they are written.
An event that stays unsealed longer than SEAL_GRACE is reported by `verify_chain`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, true
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from mdm.ground import clock
from mdm.ground.db import is_postgres, update_rows
from mdm.ground.models import AuditEvent
from mdm.ground.redaction import INLINE_LIMIT, REDACTED, digest, is_secret_key, redact

__all__ = [
    "INLINE_LIMIT",
    "REDACTED",
    "digest",
    "is_secret_key",
    "redact",
]

GENESIS = "0" * 64
# session.info key: this transaction wrote unsealed events (the sealer is woken after commit).
UNSEALED_WRITTEN = "hikeshi.audit_unsealed"
# The sealer runs right after commit and a scheduled sweep every minute; older means it is broken.
SEAL_GRACE = timedelta(minutes=10)
# Arbitrary constant naming the PostgreSQL advisory lock that serialises chain appends.
_CHAIN_LOCK_KEY = 0x48494B45


@dataclass(frozen=True)
class Actor:
    """Who does something: a user, an API token, a device, or the system itself."""

    name: str
    role: str
    source_ip: str | None = None
    # The person behind the action (a console user, or the owner of an API token); None for
    # devices, the system and service accounts. The two-person wipe rule compares this.
    user_id: int | None = None


SYSTEM = Actor("system", "system")


def _canonical_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compute_hash(event: AuditEvent) -> str:
    body = {
        "seq": event.seq,
        "occurred_at": _canonical_time(event.occurred_at),
        "actor": event.actor,
        "actor_role": event.actor_role,
        "source_ip": event.source_ip,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    data = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def record_event(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: str | int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to the chain inside the caller's transaction."""
    return record_events(session, actor, [AuditEntry(action, target_type, target_id, details)])[0]


@dataclass(frozen=True)
class AuditEntry:
    """One event for `record_events`."""

    action: str
    target_type: str | None = None
    target_id: str | int | None = None
    details: dict[str, Any] | None = None


def record_events(session: Session, actor: Actor, entries: Sequence[AuditEntry]) -> list[AuditEvent]:
    """Append many events by one actor to the chain in one insert, inside the caller's transaction.

    Every event's details are redacted and digested exactly as `record_event` does. On SQLite
    each event is linked to the one before it here; on PostgreSQL after commit (module doc)."""
    if not entries:
        return []
    deferred = is_postgres(session)
    seq, prev_hash = 0, GENESIS
    if not deferred:
        seq, prev_hash = _chain_head(session)
    # Microseconds are kept: both databases store them, so the hash can be recomputed.
    now = clock.now()
    events = []
    for entry in entries:
        event = AuditEvent(**event_columns(actor, entry, now))
        if not deferred:
            seq += 1
            prev_hash = _seal(event, seq, prev_hash)
        events.append(event)
    if deferred:
        note_unsealed_written(session)
    session.add_all(events)
    session.flush()
    return events


def event_columns(actor: Actor, entry: AuditEntry, occurred_at: datetime) -> dict[str, Any]:
    """The columns of an unsealed event, its details redacted: what `record_events` writes, and
    what a statement that inserts an event itself (PostgreSQL only: unsealed, see the module doc)
    must bind."""
    return {
        "occurred_at": occurred_at,
        "actor": actor.name,
        "actor_role": actor.role,
        "source_ip": actor.source_ip,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": None if entry.target_id is None else str(entry.target_id),
        # Round-trip through JSON so the hashed form is exactly what the database hands back.
        "details": json.loads(json.dumps(redact(entry.details or {}), ensure_ascii=False, default=str)),
    }


def note_unsealed_written(session: Session) -> None:
    """This transaction wrote unsealed events (PostgreSQL): the sealer is woken after its commit."""
    session.info[UNSEALED_WRITTEN] = True


def _seal(event: AuditEvent, seq: int, prev_hash: str) -> str:
    event.seq = seq
    event.prev_hash = prev_hash
    event.hash = compute_hash(event)
    return event.hash


# The chain's head (its last sealed row) as a one-row subquery every pending row carries: the
# sealer reads what it links and what it links to in one statement.
_HEAD = (
    select(AuditEvent.seq.label("head_seq"), AuditEvent.hash.label("head_hash"))
    .where(AuditEvent.seq.is_not(None))
    .order_by(AuditEvent.seq.desc())
    .limit(1)
    .subquery("chain_head")
)
_PENDING_WITH_HEAD = (
    select(AuditEvent, _HEAD.c.head_seq, _HEAD.c.head_hash)
    .outerjoin(_HEAD, true())
    .where(AuditEvent.seq.is_(None))
    .order_by(AuditEvent.id)
    .limit(bindparam("limit"))
)


def _head_or_genesis(seq: int | None, hash_: str | None) -> tuple[int, str]:
    """Where the next link starts: after the head, or at the genesis of an empty chain."""
    return (0, GENESIS) if seq is None else (int(seq), str(hash_))


def _chain_head(session: Session) -> tuple[int, str]:
    head = session.execute(select(_HEAD.c.head_seq, _HEAD.c.head_hash)).first()
    return _head_or_genesis(*(head or (None, None)))  # an empty chain has no head row


def seal_pending(session: Session, limit: int = 500) -> int:
    """Link committed unsealed events into the chain, oldest first; returns how many.

    Takes the chain lock for this short transaction only. An event committed later than one
    already sealed simply gets a later place in the chain: `seq` is the chain's order."""
    if is_postgres(session):
        # A statement of its own: the read below must see what the previous holder committed,
        # and a statement's snapshot is taken before anything in it waits for the lock.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK_KEY})
    rows = session.execute(_PENDING_WITH_HEAD, {"limit": limit}).all()
    if not rows:
        return 0
    pending = [row[0] for row in rows]
    head_seq, head_hash = rows[0][1], rows[0][2]
    seq, prev_hash = _head_or_genesis(head_seq, head_hash)
    links: list[tuple[int, int, str, str]] = []
    for event in pending:
        seq += 1
        # Committed values: the session must not flush them again after the one UPDATE below.
        set_committed_value(event, "seq", seq)
        set_committed_value(event, "prev_hash", prev_hash)
        link_to = prev_hash
        prev_hash = compute_hash(event)
        set_committed_value(event, "hash", prev_hash)
        links.append((event.id, seq, link_to, prev_hash))
    _write_links(session, links)
    return len(pending)


def _write_links(session: Session, links: list[tuple[int, int, str, str]]) -> None:
    """(id, seq, prev_hash, hash) of each event: one statement on PostgreSQL (an UPDATE a row
    was one statement per audit event on the device channel's busiest path)."""
    update_rows(
        session,
        AuditEvent,
        [{"id": id_, "seq": seq, "prev_hash": prev, "hash": hash_} for id_, seq, prev, hash_ in links],
    )


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str | None = None
    unsealed: int = 0  # written, not yet linked into the chain (normally for a moment)


def verify_chain(session: Session, batch: int = 5000) -> ChainReport:
    """Walk the chain in order; report the first row whose hash or link does not hold."""
    prev_hash: str | None = None
    prev_seq: int | None = None
    checked = 0
    last_seq = 0
    while True:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.seq > last_seq)
            .order_by(AuditEvent.seq)
            .limit(batch)
            # What the database holds, not this session's copies (sealed by another session since).
            .execution_options(populate_existing=True)
        ).all()
        if not rows:
            return _unsealed_report(session, checked)
        for row in rows:
            if prev_hash is None:
                expected_prev = anchor_for(session, row)
            else:
                expected_prev = prev_hash
            if prev_seq is not None and row.seq != prev_seq + 1:
                return ChainReport(False, checked, row.seq, row.id, f"a row is missing before seq {row.seq}")
            if row.prev_hash != expected_prev:
                return ChainReport(False, checked, row.seq, row.id, "link to the previous row is broken")
            if compute_hash(row) != row.hash:
                return ChainReport(False, checked, row.seq, row.id, "row content does not match its hash")
            prev_hash, prev_seq, last_seq = row.hash, row.seq, int(row.seq or 0)
            checked += 1
        session.expunge_all()


def _unsealed_report(session: Session, checked: int) -> ChainReport:
    unsealed = session.scalar(select(func.count()).where(AuditEvent.seq.is_(None))) or 0
    stale = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.seq.is_(None), AuditEvent.occurred_at < clock.now() - SEAL_GRACE)
        .order_by(AuditEvent.id)
        .limit(1)
    ).first()
    if stale is not None:
        return ChainReport(
            False, checked, None, stale.id, f"event id {stale.id} was never sealed into the chain", unsealed
        )
    return ChainReport(True, checked, unsealed=unsealed)


def anchor_for(session: Session, first: AuditEvent) -> str:
    """The hash the oldest kept row must link to: genesis, or the last purged row's hash.

    A retention purge records an `audit.purge` event naming the hash of the last row it removed,
    so the chain stays verifiable after old rows are gone.
    """
    if first.seq == 1:
        return GENESIS
    purge = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit.purge").order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    if purge is not None and purge.details.get("up_to_seq") == (first.seq or 0) - 1:
        return str(purge.details.get("last_purged_hash"))
    return "(missing rows before the oldest kept event)"


class AuditChainBroken(RuntimeError):
    """The chain does not verify; purging now would destroy the evidence."""

    def __init__(self, report: ChainReport) -> None:
        super().__init__(
            f"audit chain broken at event id {report.broken_id} (seq {report.broken_seq}): {report.reason}"
        )
        self.report = report


def purge_audit(session: Session, before: datetime, actor: Actor) -> AuditEvent | None:
    """Delete the oldest events written before `before`, recording an `audit.purge` event.

    Only an unbroken prefix of the chain goes: the purge stops at the first event that is still
    within retention, even if older events follow it. The purge event names the last purged seq
    and hash, so `verify_chain` anchors the oldest kept row on it. A chain that does not verify
    is never purged. Returns the purge event, or None when nothing is old enough.
    """
    while seal_pending(session):
        pass  # the chain lock is now held (PostgreSQL) until this transaction ends
    report = verify_chain(session)
    if not report.ok:
        raise AuditChainBroken(report)
    first_kept = session.scalar(select(func.min(AuditEvent.seq)).where(AuditEvent.occurred_at >= before))
    oldest = session.scalar(select(func.min(AuditEvent.seq)))
    if oldest is None:
        return None
    if first_kept is None:
        up_to = session.scalar(select(func.max(AuditEvent.seq)))
    else:
        up_to = first_kept - 1
    if up_to is None or up_to < oldest:
        return None
    last = session.scalars(select(AuditEvent).where(AuditEvent.seq == up_to)).one()
    count = up_to - oldest + 1
    event = record_event(
        session,
        actor,
        "audit.purge",
        "audit",
        None,
        {
            "up_to_seq": up_to,
            "last_purged_hash": last.hash,
            "purged_events": count,
            "before": _canonical_time(before.astimezone(UTC)),
        },
    )
    seal_pending(session)  # the purge event links to the last purged row before that row goes
    session.execute(delete(AuditEvent).where(AuditEvent.seq <= up_to))
    return event
