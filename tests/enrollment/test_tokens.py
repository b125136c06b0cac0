"""Enrollment tokens: bound to a unit and platform, expiring, limited, revocable, stored hashed."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from enrollment import tokens
from mdm.ground.config import Settings
from mdm.ground.db import make_session_factory, transaction
from mdm.ground.models import AuditEvent, EnrollmentChallenge, EnrollmentToken
from tests.enrollment.conftest import ADMIN


def test_token_is_stored_hashed_and_audited(
    session: Session, tree: Any, make_token: Any, settings: Settings
) -> None:
    created = make_token(tree.ambulance, uses=20, days=7)
    assert len(created.secret) >= 32
    assert created.url(settings) == f"https://mdm.test.invalid/enroll/{created.secret}"
    row = session.get(EnrollmentToken, created.token.id)
    assert row is not None and row.token_hash == tokens.hash_secret(created.secret)
    # The secret itself is nowhere in the database.
    for table in ("enrollment_tokens", "audit_events"):
        dump = " ".join(str(r) for r in session.execute(text(f"SELECT * FROM {table}")))
        assert created.secret not in dump
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "enrollment_token.created")).one()
    assert event.details["org_unit_id"] == tree.ambulance.id and event.details["max_uses"] == 20
    assert tokens.find_token(session, created.secret) is row
    assert tokens.find_token(session, created.secret + "x") is None
    assert tokens.usable_token(session, created.secret) is row


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"max_uses": 0}, "max_uses"),
        ({"max_uses": 10_001}, "max_uses"),
        ({"platform": "windows"}, "platform"),
        ({"org_unit_id": 999_999}, "org_unit_id"),
        ({"expires_in": timedelta(seconds=-1)}, "expires_at"),
        ({"expires_in": timedelta(days=400)}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),  # naive: refused
        ({"note": "x" * 300}, "note"),
    ],
)
def test_bad_token_input_names_the_field(
    session: Session, tree: Any, data: dict[str, Any], field: str
) -> None:
    base: dict[str, Any] = {"org_unit_id": tree.pump.id, "expires_in": timedelta(days=1)}
    if "expires_at" in data:
        base.pop("expires_in")
    base.update(data)
    with pytest.raises(tokens.TokenError) as caught:
        tokens.create_token(session, base, actor=ADMIN)
    assert field in caught.value.fields
    assert session.scalars(select(EnrollmentToken)).all() == []


def test_states_expiry_revocation(session: Session, tree: Any, frozen_clock: Any) -> None:
    created = tokens.create_token(
        session, {"org_unit_id": tree.pump.id, "max_uses": 2, "expires_in": timedelta(hours=2)}, actor=ADMIN
    )
    token = created.token
    assert tokens.token_state(token) == tokens.TokenState.ACTIVE
    frozen_clock.advance(hours=2)
    assert tokens.token_state(token) == tokens.TokenState.EXPIRED
    with pytest.raises(tokens.TokenUnavailable) as caught:
        tokens.usable_token(session, created.secret)
    assert caught.value.state == "expired"
    with pytest.raises(tokens.TokenUnavailable) as caught:
        tokens.usable_token(session, "no-such-token")
    assert caught.value.state == "unknown"

    other = tokens.create_token(
        session, {"org_unit_id": tree.pump.id, "expires_in": timedelta(days=1)}, actor=ADMIN
    )
    tokens.revoke_token(session, other.token, actor=ADMIN, reason="sheet lost")
    tokens.revoke_token(session, other.token, actor=ADMIN)  # idempotent: one event
    assert tokens.token_state(other.token) == tokens.TokenState.REVOKED
    assert other.token.revoke_reason == "sheet lost" and other.token.revoked_by == ADMIN.name
    revoked = session.scalars(select(AuditEvent).where(AuditEvent.action == "enrollment_token.revoked")).all()
    assert len(revoked) == 1 and revoked[0].details["reason"] == "sheet lost"
    assert tokens.list_tokens(session, include_inactive=False) == []
    assert [t.id for t in tokens.list_tokens(session)] == [other.token.id, token.id]
    assert tokens.list_tokens(session, org_unit_ids={tree.ambulance.id}) == []


def test_challenges_are_single_use_and_count_uses(session: Session, tree: Any, settings: Settings) -> None:
    created = tokens.create_token(
        session, {"org_unit_id": tree.pump.id, "max_uses": 2, "expires_in": timedelta(days=1)}, actor=ADMIN
    )
    secrets = [
        tokens.issue_enrollment_challenge(session, settings, created.token, actor=ADMIN) for _ in range(3)
    ]
    stored = session.scalars(select(EnrollmentChallenge.challenge_hash)).all()
    assert not set(secrets) & set(stored)  # hashed
    tokens.redeem_challenge(session, secrets[0])
    with pytest.raises(tokens.ChallengeRejected, match="already used"):
        tokens.redeem_challenge(session, secrets[0])
    with pytest.raises(tokens.ChallengeRejected, match="unknown"):
        tokens.redeem_challenge(session, "guess")
    tokens.redeem_challenge(session, secrets[1])
    assert created.token.use_count == 2
    # The third challenge was issued while uses were left, but the token is now used up.
    with pytest.raises(tokens.ChallengeRejected, match="used up"):
        tokens.redeem_challenge(session, secrets[2])


def test_challenge_expires(session: Session, tree: Any, settings: Settings, frozen_clock: Any) -> None:
    created = tokens.create_token(
        session, {"org_unit_id": tree.pump.id, "expires_in": timedelta(days=1)}, actor=ADMIN
    )
    secret = tokens.issue_enrollment_challenge(session, settings, created.token, actor=ADMIN)
    frozen_clock.advance(minutes=settings.scep_challenge_minutes + 1)
    with pytest.raises(tokens.ChallengeRejected, match="expired"):
        tokens.redeem_challenge(session, secret)
    assert created.token.use_count == 0


def test_concurrent_redemptions_of_a_one_use_token_issue_one(
    engine: Engine, tree: Any, settings: Settings
) -> None:
    """Eight devices race with eight challenges of a one-use token: exactly one wins."""
    # The server's own session setup (IMMEDIATE transactions on SQLite), one session per thread.
    session_factory = make_session_factory(engine)
    with transaction(session_factory) as s:
        created = tokens.create_token(
            s, {"org_unit_id": tree.pump.id, "max_uses": 1, "expires_in": timedelta(days=1)}, actor=ADMIN
        )
        secrets = [
            tokens.issue_enrollment_challenge(s, settings, created.token, actor=ADMIN) for _ in range(8)
        ]
        token_id = created.token.id
    barrier = threading.Barrier(len(secrets))
    outcomes: list[str] = []
    lock = threading.Lock()

    def race(secret: str) -> None:
        barrier.wait()
        try:
            with transaction(session_factory) as s:
                tokens.redeem_challenge(s, secret)
            result = "won"
        except tokens.ChallengeRejected:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=race, args=(secret,)) for secret in secrets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["refused"] * 7 + ["won"]
    with session_factory() as s:
        assert s.get(EnrollmentToken, token_id).use_count == 1  # type: ignore[union-attr]


def test_parse_duration() -> None:
    assert tokens.parse_duration("7d") == timedelta(days=7)
    assert tokens.parse_duration("12h") == timedelta(hours=12)
    assert tokens.parse_duration("90m") == timedelta(minutes=90)
    assert tokens.parse_duration("2w") == timedelta(weeks=2)
    for bad in ("", "7", "d7", "7y", "-1d"):
        with pytest.raises(tokens.TokenError):
            tokens.parse_duration(bad)


def test_stale_challenges_are_purged(
    session: Session, tree: Any, settings: Settings, frozen_clock: Any
) -> None:
    created = tokens.create_token(
        session, {"org_unit_id": tree.pump.id, "max_uses": 5, "expires_in": timedelta(days=7)}, actor=ADMIN
    )
    used = tokens.issue_enrollment_challenge(session, settings, created.token, actor=ADMIN)
    tokens.issue_enrollment_challenge(session, settings, created.token, actor=ADMIN)
    tokens.redeem_challenge(session, used)
    frozen_clock.advance(days=20)
    assert tokens.purge_stale_challenges(session) == 0  # expired, but not long enough ago
    frozen_clock.advance(days=15)
    assert tokens.purge_stale_challenges(session) == 1
    assert [c.used_at is not None for c in session.scalars(select(EnrollmentChallenge))] == [True]
