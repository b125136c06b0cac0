"""Detached CMS signatures of wipe certificates: ours verifies them, openssl verifies them, and
one changed byte makes both fail. Certificates from tests/support/pki (no server needed)."""

from __future__ import annotations

import json
import subprocess

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from commands.wipe_certificate import (
    CertificateInvalid,
    render_certificate_html,
    sign_detached,
    verify_detached,
)
from tests.support.pki import issue_cert, make_ca, write_pem
from tests.support.tools import require_tool

CONTENT = json.dumps(
    {"device": {"serial_number": "DMQX1", "udid": "00008101-AB"}, "title_ja": "消去完了証明書"},
    ensure_ascii=False,
    indent=2,
).encode()


@pytest.fixture(scope="module")
def pki():
    ca, ca_key = make_ca("Hotline Test CA")
    signer, signer_key = issue_cert(
        ca, ca_key, "Hikeshi Signing", extended_key_usage=[ExtendedKeyUsageOID.EMAIL_PROTECTION]
    )
    other_ca, _ = make_ca("Someone Else's CA")
    return ca, signer, signer_key, other_ca


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_signature_verifies_and_one_changed_byte_fails(pki):
    ca, signer, key, other_ca = pki
    signature = sign_detached(CONTENT, signer, key)
    assert CONTENT not in signature  # detached
    assert verify_detached(CONTENT, signature, [ca]).signer == signer
    with pytest.raises(CertificateInvalid, match="altered"):
        verify_detached(_flip(CONTENT, 10), signature, [ca])
    with pytest.raises(CertificateInvalid, match="trusted"):
        verify_detached(CONTENT, signature, [other_ca])
    with pytest.raises(CertificateInvalid):
        verify_detached(CONTENT, _flip(signature, len(signature) - 5), [ca])
    with pytest.raises(CertificateInvalid, match=r"malformed|not a CMS"):
        verify_detached(CONTENT, b"not a signature", [ca])


def test_openssl_agrees(pki, tmp_path):
    openssl = require_tool("openssl")
    ca, signer, key, _ = pki
    content, sig, ca_file = tmp_path / "c.json", tmp_path / "c.json.p7s", tmp_path / "ca.pem"
    content.write_bytes(CONTENT)
    sig.write_bytes(sign_detached(CONTENT, signer, key))
    write_pem(ca_file, ca)
    args = [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig)]
    args += ["-content", str(content), "-CAfile", str(ca_file), "-out", "/dev/null"]
    ok = subprocess.run(args, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    content.write_bytes(_flip(CONTENT, 10))
    bad = subprocess.run(args, capture_output=True, text=True)
    assert bad.returncode != 0


def test_printable_page_is_japanese_first_and_escaped():
    content = {
        "device": {
            "serial_number": "DMQX1",
            "udid": "U",
            "model": "MPQ03J/A",
            "model_name": "iPad",
            "product_name": None,
            "device_name": "<script>",
            "platform": "apple",
        },
        "org_unit": {"id": 1, "path": "消防本部 / 救急3隊"},
        "incident": {"id": 7, "kind": "stolen", "opened_at": "2026-11-23T03:00:00Z", "operator": "op"},
        "wipe": {
            "method": "EraseDevice",
            "command_uuid": "C-1",
            "requested_by": "op",
            "requested_at": None,
            "approved_by": None,
            "approved_at": None,
            "break_glass": True,
            "break_glass_by": "admin",
            "break_glass_reason": "緊急",
            "queued_at": None,
            "pushed_at": None,
            "delivered_at": None,
            "acknowledged_at": "2026-11-23T04:00:00Z",
        },
    }
    page = render_certificate_html(json.dumps(content).encode(), signer_fingerprint="ab" * 32)
    assert page.index("消去完了証明書") < page.index("Certificate of device erasure")
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert "盗難" in page and "break-glass" in page and "緊急" in page
