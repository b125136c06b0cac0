"""Android provisioning settings stored by the console (issue #19 item 8): a stored value wins over
the environment, a blank one falls back to it, a signing certificate gives the checksum, bad input
names the field, and an unusable configuration refuses tokens naming what is missing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from enrollment import android_qr
from enrollment.android_settings import (
    ProvisioningInputError,
    checksum_of_certificate,
    effective_settings,
    provisioning_problems,
    require_usable_provisioning,
    save_provisioning,
)
from enrollment.tokens import TokenError
from mdm.ground.audit import SYSTEM

CHECKSUM = "gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w="


def test_stored_values_win_and_blank_falls_back_to_the_environment(session, settings, device_ca):
    env = replace(settings, android_agent_download_url="https://env.example.jp/agent.apk")
    assert set(provisioning_problems(effective_settings(session, env))) == {"agent_signature_checksum"}
    with pytest.raises(TokenError) as refused:
        require_usable_provisioning(session, env)
    assert "署名証明書のチェックサム" in refused.value.fields["platform"][0]
    assert "signing certificate checksum" in refused.value.fields["platform"][0]

    pem = device_ca.path.read_bytes()
    checksum = checksum_of_certificate(pem)
    assert len(checksum) == 44
    changed = save_provisioning(
        session, env, SYSTEM, {"agent_signature_checksum": checksum, "locale": "en_US"}
    )
    assert sorted(changed) == ["agent_signature_checksum", "locale"]
    effective = effective_settings(session, env)
    payload = android_qr.provisioning_payload(effective, "secret")
    assert payload[android_qr.DOWNLOAD_LOCATION] == "https://env.example.jp/agent.apk"  # from the environment
    assert payload[android_qr.SIGNATURE_CHECKSUM] == checksum and payload[android_qr.LOCALE] == "en_US"
    require_usable_provisioning(session, env)
    # Saving the same values again changes nothing; blank returns the locale to the environment's.
    assert save_provisioning(session, env, SYSTEM, {"agent_signature_checksum": checksum}) == []
    save_provisioning(session, env, SYSTEM, {"locale": ""})
    assert effective_settings(session, env).android_provisioning_locale == env.android_provisioning_locale


def test_bad_values_are_refused_naming_the_field(session, settings):
    with pytest.raises(ProvisioningInputError) as refused:
        save_provisioning(
            session,
            settings,
            SYSTEM,
            {
                "agent_download_url": "http://plain.example/agent.apk",
                "agent_signature_checksum": "not-base64",
                "wifi_security": "wpa3",
                "agent_package": "jp.a",
                "agent_component": "jp.b/.Receiver",
            },
        )
    assert set(refused.value.fields) == {
        "agent_download_url",
        "agent_signature_checksum",
        "wifi_security",
        "agent_component",
    }
    with pytest.raises(ProvisioningInputError) as refused:
        checksum_of_certificate(b"not a certificate")
    assert list(refused.value.fields) == ["signing_certificate"]
    assert save_provisioning(session, settings, SYSTEM, {"agent_signature_checksum": CHECKSUM}) == [
        "agent_signature_checksum"
    ]
