"""QR codes (zbarimg reads them back), the printable sheet, and friendly pages for bad tokens."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest
import segno
from sqlalchemy.orm import Session

from enrollment import qr, tokens
from mdm.ground.models import EnrollmentToken
from tests.enrollment.conftest import ADMIN
from tests.support.tools import require_tool


@pytest.mark.tool
def test_zbarimg_decodes_the_served_qr_to_the_exact_url(
    enroll_client: Any, tree: Any, make_token: Any, tmp_path: Path
) -> None:
    zbarimg = require_tool("zbarimg", "zbar-tools")
    created = make_token(tree.ambulance, uses=20)
    response = enroll_client.get(f"/enroll/{created.secret}/qr.png")
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    image = tmp_path / "qr.png"
    image.write_bytes(response.data)
    result = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(image)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"https://mdm.test.invalid/enroll/{created.secret}"


def test_qr_parameters_and_svg(enroll_client: Any, tree: Any, make_token: Any) -> None:
    created = make_token(tree.ambulance)
    url = f"https://mdm.test.invalid/enroll/{created.secret}"
    code = qr.make_qr(url)
    assert code.error == "M"
    # PNG size = (modules + 2 × 4-module quiet zone) × scale.
    png = qr.qr_png(url, scale=8)
    width = int.from_bytes(png[16:20], "big")
    assert width == (code.symbol_size(scale=1, border=0)[0] + 2 * qr.QUIET_ZONE) * 8
    response = enroll_client.get(f"/enroll/{created.secret}/qr.svg")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(response.data)
    assert root.tag.endswith("svg")
    assert int(float(root.get("width", "0"))) == (code.symbol_size(scale=1, border=0)[0] + 8) * 8
    assert segno.make_qr(url, error="m", boost_error=False).matrix == code.matrix


def test_printable_sheet(enroll_client: Any, tree: Any, make_token: Any) -> None:
    created = make_token(tree.ambulance, uses=20, days=7)
    response = enroll_client.get(f"/enroll/{created.secret}/sheet")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    html = response.get_data(as_text=True)
    for text in (
        "端末登録シート",
        "Tablet enrollment sheet",
        "東京消防本部 / 中央消防署 / 中央救急隊",
        "Tokyo Fire HQ / Chuo Fire Station / Chuo Ambulance 1",
        "有効期限",
        "Valid until",
        "(日本時間 / JST)",
        "20 / 20",
        f"https://mdm.test.invalid/enroll/{created.secret}",
        "@media print",
        "@page",
    ):
        assert text in html, text
    assert html.count("<li>") == 3  # three steps
    assert "<svg" in html and "qrline" in html
    # JST is UTC+9.
    local = created.token.expires_at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert local.strftime("%Y-%m-%d %H:%M") in html


@pytest.mark.parametrize("path", ["", "/sheet", "/qr.png", "/qr.svg"])
def test_unusable_tokens_get_friendly_pages(
    enroll_client: Any, session: Session, tree: Any, make_token: Any, frozen_clock: Any, path: str
) -> None:
    expired = make_token(tree.pump, days=1)
    revoked = make_token(tree.pump)
    tokens.revoke_token(session, session.get(EnrollmentToken, revoked.token.id), actor=ADMIN)  # type: ignore[arg-type]
    used = make_token(tree.pump, uses=1)
    session.get(EnrollmentToken, used.token.id).use_count = 1  # type: ignore[union-attr]
    session.commit()
    frozen_clock.advance(days=2)

    cases = {
        expired.secret: (410, "有効期限が切れています", "expired"),
        revoked.secret: (410, "無効化されています", "revoked"),
        used.secret: (410, "上限", "used_up"),
        "no-such-token": (404, "正しくありません", "not valid"),
        "x" * 500: (404, "正しくありません", "not valid"),
    }
    for secret, (status, japanese, english) in cases.items():
        response = enroll_client.get(f"/enroll/{secret}{path}")
        assert response.status_code == status, secret
        assert response.headers["Content-Type"].startswith("text/html")
        html = response.get_data(as_text=True)
        assert japanese in html and english in html and "Traceback" not in html
        assert "情報システム担当" in html  # who to ask for a new sheet
