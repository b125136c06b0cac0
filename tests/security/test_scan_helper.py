"""The scanner used by the secrets-at-rest tests finds a secret in every form it looks for, so a
clean scan means something."""

from __future__ import annotations

import base64
import os

from tests.security.scan import find_in


def test_the_scanner_finds_a_secret_in_clear_hex_and_base64_at_any_offset():
    secret = "kasai-PSK-2026!"
    assert find_in(b"xx" + secret.encode() + b"yy", {"psk": secret}, "blob")
    assert find_in(secret.encode().hex().upper().encode(), {"psk": secret}, "blob")
    for pad in range(6):
        blob = os.urandom(pad) + secret.encode() + os.urandom(7)
        assert find_in(base64.b64encode(blob), {"psk": secret}, "b64"), pad
        assert find_in(base64.urlsafe_b64encode(blob), {"psk": secret}, "b64url"), pad
    assert not find_in(base64.b64encode(os.urandom(64)), {"psk": secret}, "noise")
