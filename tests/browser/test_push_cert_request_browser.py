"""Issue 20 §1 in a real browser (Debian's chromium through Playwright), at a laptop's 1366×768 and
an iPad's 820×1180: a new HQ goes from no push certificate to a working one in the Japanese console.

- Community signing service (no vendor certificate configured): make the request, download the CSR
  and the encryption certificate, the "service" (the test: signs with a stand-in vendor, then
  `openssl smime -encrypt` to our certificate, hex) answers, upload it, download push-request.b64.
- Vendor certificate configured: push-request.b64 is ready at once (`openssl` checks its signature).

"Apple's portal" is the APNs test server's client CA issuing a certificate for the CSR's key; the
page imports it (the key is the one kept sealed here), shows topic and expiry, and a push to the
enrolled simulated iPad reaches the APNs test server with that certificate. The vendor case then
renews (same Apple ID: same topic, a new key) and is refused a certificate with another topic.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from commands.queue import enqueue_command
from mdm.ground.audit import SYSTEM
from mdm.ground.db import transaction
from mdm.ground.models import AuditEvent, Device, PushCertificate
from mdm.services.push_cert_request import PendingRequest, read_signed_request, vendor_signed_request
from tests.browser.test_console_browser import ARTIFACTS, browser  # noqa: F401
from tests.browser.test_hotline_browser import _login, _watch
from tests.push.test_push_cert_request import vendor  # noqa: F401
from tests.support import pki
from tests.support.tools import require_tool
from tests.web.helpers import live_app, make_user

pytestmark = pytest.mark.browser


def _download(page: Any, selector: str) -> bytes:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


def _openssl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([require_tool("openssl"), *args], input=input, capture_output=True, check=False)


def _signing_service(csr_pem: bytes, encryption_pem: bytes, vendor_files: dict[str, Path], tmp: Path) -> Path:
    """A community signing service: signs the CSR as an MDM vendor and encrypts the answer to the
    requester's encryption certificate, hex encoded."""
    csr = x509.load_pem_x509_csr(csr_pem)
    signed = vendor_signed_request(
        PendingRequest("", pki.rsa_key("service-unused"), csr),  # type: ignore[arg-type]
        vendor_files["chain"].read_bytes(),
        vendor_files["key"].read_bytes(),
    )
    recipient = tmp / "recipient.pem"
    recipient.write_bytes(encryption_pem)
    encrypted = _openssl(
        "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER", str(recipient), input=signed
    )
    assert encrypted.returncode == 0, encrypted.stderr
    answer = tmp / "signed-answer.txt"
    answer.write_text(encrypted.stdout.hex())
    return answer


def _check_upload(upload: bytes, vendor_files: dict[str, Path], tmp: Path) -> x509.CertificateSigningRequest:
    """What Apple's portal checks: the plist's CSR and the vendor's signature over it (openssl)."""
    request = read_signed_request(upload)
    csr_der = base64.b64decode(request["PushCertRequestCSR"])
    (tmp / "csr.der").write_bytes(csr_der)
    (tmp / "sig.bin").write_bytes(base64.b64decode(request["PushCertSignature"]))
    chain = x509.load_pem_x509_certificates(request["PushCertCertificateChain"].encode())
    (tmp / "vendor-pub.pem").write_bytes(
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    verified = _openssl(
        "dgst", "-sha256", "-verify", str(tmp / "vendor-pub.pem"), "-signature", str(tmp / "sig.bin"),
        str(tmp / "csr.der"),
    )  # fmt: skip
    assert verified.returncode == 0 and b"Verified OK" in verified.stdout, verified.stderr
    assert chain[0].subject == x509.load_pem_x509_certificate(vendor_files["chain"].read_bytes()).subject
    return x509.load_der_x509_csr(csr_der)


@pytest.mark.tool
@pytest.mark.parametrize(
    ("viewport", "mode"),
    [({"width": 1366, "height": 768}, "community"), ({"width": 820, "height": 1180}, "vendor")],
    ids=["1366x768-community", "820x1180-vendor"],
)
def test_zero_to_a_working_push_certificate_in_the_console(
    browser: Any,  # noqa: F811
    vendor: dict[str, Path],  # noqa: F811
    viewport: dict[str, int],
    mode: str,
    settings: Any,
    device_ca: Any,
    session_factory: Any,
    apns_server: Any,
    tmp_path: Path,
) -> None:
    from tests.support.apple_device import SimulatedIPad

    ARTIFACTS.mkdir(exist_ok=True)
    with session_factory() as session:
        admin = make_user(session, settings, "hq-admin", "admin")
        operator = make_user(session, settings, "hq-operator", "operator")
    conf = replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
        push_vendor_cert_file=str(vendor["chain"]) if mode == "vendor" else None,
        push_vendor_key_file=str(vendor["key"]) if mode == "vendor" else None,
    )

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(replace(conf, public_url=base))

    with live_app(build) as (base, app), httpx.Client(base_url=base, timeout=30) as device_http:
        factory = app.extensions["hikeshi"].session_factory
        problems: list[str] = []
        context = browser.new_context(locale="ja-JP", viewport=viewport, accept_downloads=True)
        page = context.new_page()
        _watch(page, problems)

        # An operator has no way in.
        _login(page, base, operator)
        assert page.goto(f"{base}/console/settings/push-certificate/request").status == 403
        problems.clear()
        context.clear_cookies()

        _login(page, base, admin)
        page.goto(f"{base}/console/settings")
        page.click("#push-cert-request-link")
        page.wait_for_url("**/console/settings/push-certificate/request")
        assert page.inner_text("h1") == "プッシュ証明書の申請"
        assert page.locator("#push-cert-none").is_visible()
        assert "同じ Apple ID" in page.inner_text("#same-apple-id")
        assert "新しい証明書を作成しないでください" in page.inner_text("#same-apple-id")
        page.screenshot(path=str(ARTIFACTS / f"push-cert-request-{mode}-start.png"), full_page=True)

        page.fill("#push-request-email", "it@fire.example.jp")
        page.click("#make-push-request")
        page.wait_for_selector("#pending-requests li")
        if mode == "community":
            assert page.locator("#decrypt-form").is_visible()
            csr_pem = _download(page, "#pending-requests a[href$='push-request.csr']")
            encryption_pem = _download(page, "#pending-requests a[href$='push-request-encryption.pem']")
            assert b"PRIVATE KEY" not in csr_pem + encryption_pem
            answer = _signing_service(csr_pem, encryption_pem, vendor, tmp_path)
            page.set_input_files("#signing-answer", str(answer))
            page.click("#decrypt-answer-button")
            page.wait_for_selector("#pending-requests a[href$='push-request.b64']")
        else:
            assert page.locator("#decrypt-form").count() == 0
        upload = _download(page, "#pending-requests a[href$='push-request.b64']")
        csr = _check_upload(upload, vendor, tmp_path)

        # Apple's portal answers with the certificate alone; the page finds the key it kept.
        topic, apple_pem = apns_server.issue_for_public_key(csr.public_key())
        (tmp_path / "MDM_Certificate.pem").write_bytes(apple_pem)
        page.set_input_files("#apple-certificate", str(tmp_path / "MDM_Certificate.pem"))
        page.click("#import-certificate-button")
        page.wait_for_selector("#push-cert-ready")
        assert page.inner_text("#push-cert-topic") == topic
        assert "残り" in page.inner_text("#push-cert-expiry")
        assert page.locator("#pending-requests li").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(ARTIFACTS / f"push-cert-request-{mode}-done.png"), full_page=True)

        # Working: a tablet enrolls on that topic and its wake-up reaches APNs with this certificate.
        cert, key = device_ca.issue_identity(f"push-cert-{mode}")
        ipad = SimulatedIPad(cert, key, topic=topic)
        assert ipad.checkin(device_http, ipad.authenticate_body()).status_code == 200
        assert ipad.checkin(device_http, ipad.token_update_body()).status_code == 200
        with transaction(factory) as s:
            device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
            enqueue_command(s, device, "DeviceInformation", None, actor=SYSTEM, push=True)
        pushes = apns_server.wait_for_pushes(1, timeout=15)
        assert pushes[-1].token == ipad.token_hex and pushes[-1].topic == topic

        if mode == "vendor":
            # Renewal: the page speaks of renewing this topic with the same Apple ID.
            assert topic in page.inner_text("#push-cert-steps")
            page.click("#make-push-request")
            page.wait_for_selector("#pending-requests li")
            renewal_csr = _check_upload(
                _download(page, "#pending-requests a[href$='push-request.b64']"), vendor, tmp_path
            )
            # A certificate created anew (another topic) is refused, naming the risk.
            _other, wrong = apns_server.issue_for_public_key(renewal_csr.public_key())
            (tmp_path / "new.pem").write_bytes(wrong)
            page.set_input_files("#apple-certificate", str(tmp_path / "new.pem"))
            page.click("#import-certificate-button")
            page.wait_for_selector("#import-form [role=alert]")
            assert page.inner_text("#push-cert-topic") == topic
            # The refusal is a 400 page, as it should be: the only problem expected.
            problems[:] = [p for p in problems if "400" not in p]
            _topic, renewed = apns_server.issue_for_public_key(renewal_csr.public_key(), topic=topic)
            (tmp_path / "renewed.pem").write_bytes(renewed)
            page.goto(f"{base}/console/settings/push-certificate/request")
            page.set_input_files("#apple-certificate", str(tmp_path / "renewed.pem"))
            page.click("#import-certificate-button")
            page.wait_for_selector("#push-cert-ready")
            with factory() as s:
                rows = s.scalars(select(PushCertificate).order_by(PushCertificate.id)).all()
                assert [r.topic for r in rows] == [topic, topic]
                assert [r.active for r in rows] == [False, True]

        with factory() as s:
            actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert "push_certificate.requested" in actions and "push_certificate.imported" in actions
        if mode == "community":
            assert "push_certificate.request_decrypted" in actions
        assert problems == []
        context.close()
