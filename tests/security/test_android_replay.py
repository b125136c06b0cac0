"""Issue 13, item 7: a captured signed agent request is accepted once. Every signed request carries
a nonce the server stores (in the database: every server process sees it) and refuses to see
again; a timestamp further in the future than the small future skew is refused. Refusals are 401
JSON bodies with a stable `reason`."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from mdm.ground import clock
from mdm.ground.models import AgentRequestNonce
from mdm.services.android_channel import purge_expired_nonces
from tests.android import conftest as android_fixtures
from tests.security.tables_h13b import snapshot

enroll_settings = android_fixtures.enroll_settings
provisioned_ca = android_fixtures.provisioned_ca
enroll_app = android_fixtures.enroll_app
live_server = android_fixtures.live_server
tree = android_fixtures.tree
make_token = android_fixtures.make_token
android_token = android_fixtures.android_token
agent_factory = android_fixtures.agent_factory

SYNC = "/android/v1/sync"


def _enrolled(agent_factory: Any, android_token: Any, serial: str = "R52REPLAY001") -> Any:
    agent = agent_factory(serial_number=serial)
    agent.enroll(android_token())
    agent.sync()
    return agent


def _captured(agent: Any, **kwargs: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"results": []}).encode()
    headers = {**agent.signed_headers("POST", SYNC, body, **kwargs), "Content-Type": "application/json"}
    return body, headers


def _refusal(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "unauthenticated" and body["reason"] == reason, body


def test_a_captured_sync_replayed_within_the_window_is_refused(
    engine: Any, agent_factory: Any, android_token: Any
) -> None:
    agent = _enrolled(agent_factory, android_token)
    body, headers = _captured(agent)
    assert agent.http.post(SYNC, content=body, headers=headers).status_code == 200
    before = snapshot(engine)
    _refusal(agent.http.post(SYNC, content=body, headers=headers), "replayed")
    assert snapshot(engine) == before
    # A fresh nonce from the real agent still works.
    assert agent.sync()["device_id"] == agent.device_id


def test_the_nonce_is_signed_so_a_replay_cannot_swap_it(agent_factory: Any, android_token: Any) -> None:
    agent = _enrolled(agent_factory, android_token)
    body, headers = _captured(agent)
    assert agent.http.post(SYNC, content=body, headers=headers).status_code == 200
    swapped = {**headers, "Hikeshi-Nonce": "A" * 22}
    _refusal(agent.http.post(SYNC, content=body, headers=swapped), "bad_signature")


def test_a_forged_request_does_not_use_up_its_nonce(
    engine: Any, agent_factory: Any, android_token: Any
) -> None:
    """The attacker holding another tablet signs with its own key under this tablet's fingerprint.
    Refused, and nothing of it stays: not even its nonce (on PostgreSQL the identity read writes
    the nonce before the signature is checked, and the refusal must undo it)."""
    victim = _enrolled(agent_factory, android_token, "R52REPLAY001")
    attacker = _enrolled(agent_factory, android_token, "R52REPLAY002")
    body, headers = _captured(attacker)
    forged = {**headers, "Hikeshi-Certificate": _captured(victim)[1]["Hikeshi-Certificate"]}
    before = snapshot(engine)
    _refusal(attacker.http.post(SYNC, content=body, headers=forged), "bad_signature")
    _refusal(attacker.http.get("/android/v1/wait?timeout=0", headers=forged), "bad_signature")
    assert snapshot(engine) == before
    # The victim signing with that very nonce is accepted: the forgery did not take it.
    body, mine = _captured(victim, nonce=headers["Hikeshi-Nonce"])
    assert victim.http.post(SYNC, content=body, headers=mine).status_code == 200


def test_a_replay_with_another_body_is_refused_for_its_signature(
    agent_factory: Any, android_token: Any
) -> None:
    """A seen nonce under a signature that does not verify: the signature is what is wrong, and
    the refusal says so (the nonce is judged only for a request its device really signed)."""
    agent = _enrolled(agent_factory, android_token)
    body, headers = _captured(agent)
    assert agent.http.post(SYNC, content=body, headers=headers).status_code == 200
    _refusal(agent.http.post(SYNC, content=b'{"results": [ ]}', headers=headers), "bad_signature")
    _refusal(agent.http.post(SYNC, content=body, headers=headers), "replayed")


def test_a_request_without_a_nonce_is_refused(engine: Any, agent_factory: Any, android_token: Any) -> None:
    agent = _enrolled(agent_factory, android_token)
    body, headers = _captured(agent)
    before = snapshot(engine)
    for value in (None, "short", "x" * 65, "not/base64url!!!!!!!!!!!"):
        sent = {k: v for k, v in headers.items() if k != "Hikeshi-Nonce"}
        if value is not None:
            sent["Hikeshi-Nonce"] = value
        _refusal(agent.http.post(SYNC, content=body, headers=sent), "nonce_missing")
    assert snapshot(engine) == before


def test_a_timestamp_290_s_in_the_future_is_refused_a_small_skew_is_not(
    engine: Any, agent_factory: Any, android_token: Any, enroll_settings: Any
) -> None:
    agent = _enrolled(agent_factory, android_token)
    before = snapshot(engine)
    body, headers = _captured(agent, timestamp=int(time.time()) + 290)
    _refusal(agent.http.post(SYNC, content=body, headers=headers), "timestamp_in_future")
    beyond = enroll_settings.android_signature_future_skew_seconds + 5
    body, headers = _captured(agent, timestamp=int(time.time()) + beyond)
    _refusal(agent.http.post(SYNC, content=body, headers=headers), "timestamp_in_future")
    assert snapshot(engine) == before
    # A tablet whose clock runs a few seconds ahead still syncs.
    body, headers = _captured(agent, timestamp=int(time.time()) + 10)
    assert agent.http.post(SYNC, content=body, headers=headers).status_code == 200
    # The past side keeps HIKESHI_ANDROID_SIGNATURE_SKEW_SECONDS.
    old = int(time.time()) - enroll_settings.android_signature_max_skew_seconds - 30
    body, headers = _captured(agent, timestamp=old)
    _refusal(agent.http.post(SYNC, content=body, headers=headers), "timestamp_too_old")


def test_the_same_nonce_from_a_different_device_is_refused(
    engine: Any, agent_factory: Any, android_token: Any
) -> None:
    first = _enrolled(agent_factory, android_token, "R52REPLAY001")
    second = _enrolled(agent_factory, android_token, "R52REPLAY002")
    body, headers = _captured(first)
    assert first.http.post(SYNC, content=body, headers=headers).status_code == 200
    before = snapshot(engine)
    # The second tablet signs correctly with its own key, but reuses a nonce already seen.
    body, reused = _captured(second, nonce=headers["Hikeshi-Nonce"])
    _refusal(second.http.post(SYNC, content=body, headers=reused), "replayed")
    assert snapshot(engine) == before


def test_a_replay_racing_the_original_is_accepted_once(agent_factory: Any, android_token: Any) -> None:
    agent = _enrolled(agent_factory, android_token)
    body, headers = _captured(agent)
    start = threading.Barrier(3)
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=str(agent.http.base_url), timeout=60) as http:
            start.wait()
            statuses.append(http.post(SYNC, content=body, headers=headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200, 401, 401]


def test_the_long_poll_needs_a_fresh_nonce_too(agent_factory: Any, android_token: Any) -> None:
    agent = _enrolled(agent_factory, android_token)
    path = "/android/v1/wait?timeout=0"
    headers = agent.signed_headers("GET", path, b"")
    assert agent.http.get(path, headers=headers).status_code == 204
    _refusal(agent.http.get(path, headers=headers), "replayed")


def test_seen_nonces_are_forgotten_once_their_timestamp_is_out_of_the_window(
    session: Any, agent_factory: Any, android_token: Any, enroll_settings: Any
) -> None:
    agent = _enrolled(agent_factory, android_token)
    agent.sync()
    session.expire_all()
    count = session.scalar(select(func.count()).select_from(AgentRequestNonce))
    assert count >= 2  # the first sync, then this one
    [latest] = session.scalars(select(AgentRequestNonce).order_by(AgentRequestNonce.id.desc()).limit(1))
    window = timedelta(seconds=enroll_settings.android_signature_max_skew_seconds)
    assert abs((latest.expires_at - latest.seen_at) - window) < timedelta(seconds=5)
    assert purge_expired_nonces(session) == 0
    clock.set_clock(lambda: latest.expires_at + timedelta(seconds=1))
    try:
        assert purge_expired_nonces(session) == count
        session.commit()
    finally:
        clock.set_clock(None)
    assert session.scalar(select(func.count()).select_from(AgentRequestNonce)) == 0
