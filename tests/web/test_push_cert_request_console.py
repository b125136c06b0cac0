"""The push certificate request page's doors (issue 20 §1): administrators only (not operators,
approvers, auditors, nor a station-scoped administrator), CSRF on every POST, bad input a 400
naming the field, and downloads only of a pending request's own files. The whole walk from zero to
a working certificate is tests/browser/test_push_cert_request_browser.py."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.web.helpers import csrf_of, login, make_user

PAGE = "/console/settings/push-certificate/request"


@pytest.mark.parametrize("role", ["operator", "approver", "auditor", "dispatcher"])
def test_only_administrators_reach_the_page(app: Any, settings: Any, session_factory: Any, role: str) -> None:
    with session_factory() as session:
        account = make_user(session, settings, f"{role}-pc", role)
    client = app.test_client()
    login(client, account)
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, data={}).status_code in (400, 403)
    settings_page = client.get("/console/settings")
    assert 'id="push-cert-request-link"' not in settings_page.get_data(as_text=True)


def test_a_scoped_administrator_is_refused(app: Any, settings: Any, session_factory: Any, tree: Any) -> None:
    with session_factory() as session:
        account = make_user(session, settings, "station-admin", "admin", org_unit_id=tree.station_a.id)
    client = app.test_client()
    login(client, account)
    assert client.get(PAGE).status_code == 403


def test_csrf_bad_input_and_downloads(app: Any, settings: Any, session_factory: Any) -> None:
    with session_factory() as session:
        admin = make_user(session, settings, "hq-admin-pc", "admin")
    client = app.test_client()
    login(client, admin)
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "プッシュ証明書の申請" in html and "同じ Apple ID" in html

    # No CSRF token: nothing is made.
    assert client.post(PAGE, data={}).status_code in (400, 403)
    assert 'id="pending-requests"' in html and "data-key-id" not in client.get(PAGE).get_data(as_text=True)

    # A bad e-mail: 400 naming the field, and no key is left behind.
    bad = client.post(PAGE, data={"email": "not an address", "csrf_token": csrf_of(html)})
    assert bad.status_code == 400 and "メールアドレス" in bad.get_data(as_text=True)
    assert "data-key-id" not in client.get(PAGE).get_data(as_text=True)

    made = client.post(PAGE, data={"email": "", "csrf_token": csrf_of(html)})
    assert made.status_code == 302
    html = client.get(PAGE).get_data(as_text=True)
    key_id = html.split('data-key-id="', 1)[1].split('"', 1)[0]
    csr = client.get(f"{PAGE}/{key_id}/push-request.csr")
    assert csr.status_code == 200 and csr.data.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    assert csr.headers["Content-Disposition"] == 'attachment; filename="push-request.csr"'
    # Only the request's own files, by their public names; never the sealed key.
    for name in ("push-request.key", "../secret_key", f"{key_id}.key.sealed", "push-request.b64"):
        assert client.get(f"{PAGE}/{key_id}/{name}").status_code == 404, name
    assert client.get(f"{PAGE}/{'0' * 64}/push-request.csr").status_code == 404

    # Uploads that are not what they should be: 400 naming the field.
    garbage = client.post(
        f"{PAGE}/decrypt",
        data={"answer": (io.BytesIO(b"not encrypted"), "answer.txt"), "csrf_token": csrf_of(html)},
        content_type="multipart/form-data",
    )
    assert garbage.status_code == 400 and 'role="alert"' in garbage.get_data(as_text=True)
    empty = client.post(
        f"{PAGE}/import", data={"csrf_token": csrf_of(html)}, content_type="multipart/form-data"
    )
    assert empty.status_code == 400 and "証明書ファイル" in empty.get_data(as_text=True)
