"""Issue 15 items 1 and 2 on Android: the agent's policy carries the Wi-Fi passphrase it needs
(rendered at its sync with the instance secret), while the database keeps neither the passphrase
nor the enrollment token nor anything of the agent's key, after enrollment and a sync."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.enrollment.conftest import (  # noqa: F401  (fixtures)
    enroll_app,
    enroll_client,
    enroll_settings,
    live_server,
    make_token,
    provisioned_ca,
    tree,
)
from tests.security.scan import scan_database
from tests.support.android_agent import ReferenceAgent
from tests.web import helpers as web

PSK = "Android-Guest-PSK-2026"


def _passphrases(policy: dict[str, Any]) -> list[str | None]:
    networks = policy.get("openNetworkConfiguration", {}).get("NetworkConfigurations", [])
    return [n["WiFi"].get("Passphrase") for n in networks]


def test_the_agent_gets_the_passphrase_and_nothing_is_stored_in_clear(
    enroll_app: Any,  # noqa: F811
    enroll_client: Any,  # noqa: F811
    live_server: Any,  # noqa: F811
    make_token: Any,  # noqa: F811
    tree: Any,  # noqa: F811
) -> None:
    factory = enroll_app.extensions["hikeshi"].session_factory
    with factory() as s:
        admin = web.bearer(web.make_token(s, "admin"))
    spec = {
        "identifier": "jp.example.fd.android-guest",
        "name_ja": "来客Wi-Fi",
        "name_en": "Guest Wi-Fi",
        "payloads": [
            {"kind": "wifi", "settings": {"ssid": "FD-GUEST", "security": "wpa2_personal", "password": PSK}}
        ],
    }
    created = enroll_client.post("/api/v1/profiles", headers=admin, json=spec)
    assert created.status_code == 201, created.get_json()
    assigned = enroll_client.post(
        f"/api/v1/profiles/{created.get_json()['id']}/assignments",
        headers=admin,
        json={"org_unit_id": tree.ambulance.id},
    )
    assert assigned.status_code == 201
    secret = make_token(tree.ambulance, uses=1, platform="android").secret
    agent = ReferenceAgent(live_server.url)
    try:
        answer = agent.enroll(secret)
        assert _passphrases(answer["policy"]["policy"]) == [PSK]
        agent.sync(inventory=True)
        assert agent.policy is not None and _passphrases(agent.policy) == [PSK]
    finally:
        agent.http.close()
    used = {
        "PSK": PSK,
        "android enrollment token": secret,
        "agent key": agent.key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
    }
    hits, values = scan_database(enroll_app.extensions["hikeshi"].engine, used)
    assert values > 200 and hits == []
