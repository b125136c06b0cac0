"""Issue 13, item 1: a certificate issued for one purpose never opens another door. An Android
agent's identity on /mdm/*, an Apple MDM identity or a Wi-Fi certificate on /android/v1: each is
refused over real HTTP, with real signatures, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from profiles.device_identity import issue_wifi_challenge
from tests.security.identity_support import alerts, device_of, enrolled_ipad, snapshot
from tests.support.android_agent import AgentError, ReferenceAgent
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import RENEWAL_REQ, ScepClient


@pytest.fixture
def agent(live_server: Any, make_token: Any, tree: Any) -> Any:
    enrolled = ReferenceAgent(live_server.url, serial_number="R52T9000001")
    enrolled.enroll(make_token(tree.pump, platform="android").secret)
    yield enrolled
    enrolled.http.close()


def test_an_android_agent_certificate_does_not_open_the_mdm_channel(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any, agent: ReferenceAgent
) -> None:
    victim = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    before = snapshot(session)
    stranger = SimulatedIPad(agent.certificate, agent.key, topic=push_topic)
    refused = stranger.checkin(enroll_client, stranger.authenticate_body())
    assert refused.status_code == 403 and b"android_agent certificate is not an MDM identity" in refused.data
    impostor = SimulatedIPad(agent.certificate, agent.key, udid=victim.udid, topic=push_topic)
    assert impostor.checkin(enroll_client, impostor.authenticate_body()).status_code == 403
    assert impostor.connect(enroll_client, impostor.idle_body()).status_code == 401
    assert snapshot(session) == before
    [alert] = alerts(session, "device.identity_conflict")
    assert alert.details["presented_purpose"] == "android_agent"
    assert alert.device_id == device_of(session, victim.udid).id
    # The agent itself still syncs.
    assert agent.sync()["device_id"] == agent.device_id


def _impersonating_agent(live_server: Any, cert: Any, key: Any) -> ReferenceAgent:
    fake = ReferenceAgent(live_server.url)
    fake.certificate, fake.key = cert, key
    return fake


def test_an_apple_identity_does_not_open_the_android_channel(
    live_server: Any, enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    fake = _impersonating_agent(live_server, ipad.identity_cert, ipad.identity_key)
    before = snapshot(session)
    with pytest.raises(AgentError) as refused:
        fake.sync()
    assert refused.value.status == 401
    fake.http.close()
    assert snapshot(session) == before


def test_a_wifi_certificate_does_not_open_the_android_channel(
    live_server: Any, enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    challenge = issue_wifi_challenge(session, device_of(session, ipad.udid))
    session.commit()
    wifi = ScepClient(enroll_client).enroll(challenge)
    assert wifi.reply.status == "0"
    fake = _impersonating_agent(live_server, wifi.reply.certificate, wifi.key)
    before = snapshot(session)
    with pytest.raises(AgentError) as refused:
        fake.sync()
    assert refused.value.status == 401
    fake.http.close()
    assert snapshot(session) == before


def test_an_android_agent_certificate_cannot_buy_an_mdm_identity_by_renewal(
    enroll_client: Any, session: Session, agent: ReferenceAgent
) -> None:
    before = snapshot(session)
    renewal = ScepClient(enroll_client).enroll(
        None, message_type=RENEWAL_REQ, signer=(agent.certificate, agent.key)
    )
    assert (renewal.reply.status, renewal.reply.fail_info) == ("2", "2")  # FAILURE badRequest
    assert snapshot(session) == before
