"""Every console page, rendered in Japanese, is Japanese.

An administrator walks the console on a populated server (org tree, tablets with an incident and
a wipe request, a profile from the マイナ救急 template, alerts, a webhook, enrollment tokens for
both platforms, a continuity plan) and opens every page the console has: each GET route of the
console blueprint, the pages that follow a form (a created token, a refused org unit, a
confirmation) and the error pages. The visible text, including titles, placeholders, labels for
screen readers and the options of every list, must hold no message id left untranslated and no
English sentence. Product and protocol names (Apple, Android, APNs, JSON, Wi-Fi, ...) and the
English half of an element marked lang="en" are not English sentences.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from flask import url_for

import commands.incidents as hotline
from enrollment.tokens import create_token
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.models import Device
from mdm.services.alerts.service import raise_alert
from profiles.service import create_profile_from_template
from tests.web.helpers import login, make_user, post_form
from web.i18n import SOURCE_DIR, read_catalog

ROOT = Path(__file__).resolve().parents[2]
# Names that stay as they are in a Japanese sentence.
NAMES = {
    "Hikeshi",
    "MDM",
    "Apple",
    "Android",
    "iPad",
    "iPhone",
    "iOS",
    "iPadOS",
    "APNs",
    "JSON",
    "JSONL",
    "CSV",
    "Excel",
    "SCEP",
    "UDID",
    "Wi-Fi",
    "OS",
    "API",
    "Webhook",
    "TOTP",
    "QR",
    "URL",
    "HTTP",
    "HTTPS",
    "PEM",
    "Lines",
    "Ctrl",
    "SHA-256",
    "ID",
    "UUID",
    "IP",
    "CA",
    "DER",
    "PKCS",
}
# Three or more words of Latin letters in a row: a sentence, or a phrase that should have been one.
# A program's name for something (a rule id, a payload key) shown as if it were a word.
IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’-]*(?:[ ,:]+[A-Za-z][A-Za-z'’-]*){2,}")
# Query arguments a page needs (values naming an id are taken from the fixture).
QUERIES = {"console.continuity_swap": {"unit_id": "unit_id", "incident_id": "incident_id"}}
SKIPPED_ROUTES = {
    "console.static",
    "console.root",
    "console.login",  # signed in: these redirect
    "console.login_totp",
    "console.set_language",
    "console.account_password",
    "console.account_totp",
    "console.audit_export",  # downloads
    "console.profile_export",
    "console.hotline_certificate_json",
    "console.hotline_certificate_signature",
    "console.hotline_certificate_html",  # bilingual by design (ja heading, en line below)
    "console.device_commands_json",
    "console.hotline_incident_json",
}


class _Text(HTMLParser):
    """The text a person sees or hears: element text and the attributes read aloud or shown."""

    SKIP = {"script", "style", "code", "pre", "kbd", "samp", "textarea"}
    SHOWN_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "label")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stack: list[tuple[str, bool]] = []

    def _skipping(self) -> bool:
        return any(skip for _tag, skip in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        english = values.get("lang") == "en" or "en" in (values.get("class") or "").split()
        void = tag in {"input", "br", "img", "meta", "link", "hr", "col", "source", "wbr"}
        if not void:
            self._stack.append((tag, tag in self.SKIP or english))
        if self._skipping() or english:
            return
        self.parts += [values[a] or "" for a in self.SHOWN_ATTRIBUTES if values.get(a)]
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.parts.append(values["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, _skip = self._stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._skipping() and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return parser.parts


def english_in(parts: list[str]) -> list[str]:
    found = []
    for part in parts:
        for match in ENGLISH_RUN.finditer(part):
            words = re.findall(r"[A-Za-z][A-Za-z'’-]*", match.group(0))
            if sum(1 for w in words if w not in NAMES) >= 3:
                found.append(match.group(0))
    return found


def _message_ids() -> set[str]:
    """Message ids whose Japanese differs from them (a name like "JSON Lines" is both)."""
    catalog = read_catalog(sorted((SOURCE_DIR / "ja" / "LC_MESSAGES").glob("*.po")), "ja")
    same = {m.id for m in catalog if m.id and m.string == m.id}
    return _extracted_ids() - same


def _extracted_ids() -> set[str]:
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None, "N_": None}
    methods = [("web/**.py", "python"), ("web/console/templates/**.html", "jinja2")]
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map=methods, keywords=keywords, options_map={}
    ):
        text = message if isinstance(message, str) else message[0]
        if text:
            found.add(text)
    return found


def untranslated_in(parts: list[str], message_ids: set[str]) -> list[str]:
    """Message ids that appear as they are: the literal parts between placeholders, two words or more."""
    text = "\n".join(parts)
    found = []
    for message in message_ids:
        pieces = [p.strip(" .:,()") for p in re.split(r"%\([a-z_]+\)[sdf]|%[sd]", message)]
        longest = max(pieces, key=len)
        if " " in longest and re.search(r"[a-z]", longest) and longest in text:
            found.append(message)
    return found


def test_the_checks_find_english_and_leave_names_alone() -> None:
    assert english_in(["a unit (隊) must have a parent unit"]) == ["must have a parent unit"]
    assert english_in(["Pass RenderContext.device_common_name to the renderer"])
    assert english_in(["Apple Push Notification (APNs) 証明書"]) == []
    assert english_in(["Hikeshi MDM の JSON Lines 形式"]) == []
    html = '<p>本文</p><p lang="en">Shown in English on purpose</p><code>profile_missing_or_outdated</code>'
    assert visible_text(html) == ["本文"]
    assert visible_text('<input placeholder="asset tag, serial or name">') == ["asset tag, serial or name"]
    assert untranslated_in(["Select all"], {"Select all"}) == ["Select all"]


@pytest.fixture
def walked(app: Any, session_factory: Any, settings: Any, tree: Any) -> dict[str, Any]:
    """A populated server and a signed-in administrator."""
    with session_factory() as session:
        admin = make_user(session, settings, "admin1", "admin")
        operator = make_user(session, settings, "tanaka", "operator")
        device = session.get(Device, tree.device_a.id)
        device.asset_tag = "AMB-0001"
        actor = Actor("user:tanaka", "operator", "192.0.2.7", user_id=operator.user_id)
        incident = hotline.open_incident(
            session, device, {"caller_name": "救急1隊 山田", "kind": "lost"}, actor=actor
        )
        hotline.request_wipe(session, incident, actor=actor, reason="車内に置き忘れ")
        profile = create_profile_from_template(
            session, SYSTEM, "myna-kyukyu", identifier="jp.example.fd.myna", secret_key=settings.secret_key
        )
        alert = raise_alert(
            session,
            "compliance.profile_missing",
            "warning",
            "構成プロファイル未インストール: マイナ救急 / Profile missing: マイナ救急",
            device=device,
        )
        for platform in ("apple", "android"):
            create_token(
                session,
                {
                    "org_unit_id": tree.unit_a1.id,
                    "platform": platform,
                    "max_uses": 2,
                    "expires_in": timedelta(days=3),
                },
                actor=SYSTEM,
            )
        session.commit()
        ids = {
            "device_id": device.id,
            "incident_id": incident.id,
            "unit_id": tree.unit_a1.id,
            "user_id": operator.user_id,
            "alert_id": alert.id,
            "profile_id": profile.id,
            "platform": "apple",
        }
    client = app.test_client()
    login(client, admin)
    return {"client": client, "ids": ids}


def _pages(app: Any, ids: dict[str, Any]) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console.") or "GET" not in (rule.methods or ()):
            continue
        if rule.endpoint in SKIPPED_ROUTES:
            continue
        values = {name: ids.get(name) for name in rule.arguments}
        if any(v is None for v in values.values()):
            continue
        paths.append(_build(app, rule.endpoint, {**values, **QUERIES.get(rule.endpoint, {})}, ids))
    return sorted(paths)


def _build(app: Any, endpoint: str, values: dict[str, Any], ids: dict[str, Any]) -> str:
    resolved = {k: ids[v] if isinstance(v, str) and v in ids else v for k, v in values.items()}
    with app.test_request_context():
        return url_for(endpoint, **resolved)


def _problems(html: str, message_ids: set[str]) -> list[str]:
    parts = visible_text(html)
    found = english_in(parts)
    found += [f"identifier: {m}" for part in parts for m in IDENTIFIER.findall(part)]
    found += [f"untranslated: {m}" for m in untranslated_in(parts, message_ids)]
    return sorted(set(found))


def _after_forms(client: Any, tree: Any) -> dict[str, str]:
    """Pages that only a form leads to: refusals, a created token, a confirmation, errors."""
    no_parent = post_form(client, "/console/org-units", {"kind": "unit", "name_ja": "救急2隊", "code": "A2"})
    taken = post_form(
        client,
        "/console/org-units",
        {"kind": "unit", "name_ja": "救急3隊", "code": "A1", "parent_id": str(tree.station_a.id)},
    )
    bad_numbers = post_form(
        client,
        "/console/enrollment-tokens",
        {
            "org_unit_id": str(tree.unit_a1.id),
            "platform": "apple",
            "max_uses": "many",
            "expires_in_days": "0",
        },
    )
    created = post_form(
        client,
        "/console/enrollment-tokens",
        {"org_unit_id": str(tree.unit_a1.id), "platform": "apple", "max_uses": "1", "expires_in_days": "1"},
    )
    android = post_form(
        client,
        "/console/enrollment-tokens",
        {"org_unit_id": str(tree.unit_a1.id), "platform": "android", "max_uses": "1", "expires_in_days": "1"},
    )
    confirm = post_form(client, "/console/enrollment-tokens/1/revoke", {}, page="/console/enrollment-tokens")
    pages = {
        "org unit without a parent": no_parent,
        "org unit with a taken code": taken,
        "token with bad numbers": bad_numbers,
        "apple token created": created,
        "android token created": android,
        "confirmation": confirm,
        "not found": client.get("/console/devices/999999"),
        "forbidden": client.post("/console/devices/commands", data={"csrf_token": "0" * 64}),
    }
    assert "隊には上位の組織が必要です" in no_parent.get_data(as_text=True)
    assert "コード A1 は中央救急隊で使用されています" in taken.get_data(as_text=True)
    return {name: response.get_data(as_text=True) for name, response in pages.items()}


def test_every_console_page_is_japanese(app: Any, walked: dict[str, Any], tree: Any) -> None:
    client = walked["client"]
    message_ids = _message_ids()
    pages = _pages(app, walked["ids"])
    assert len(pages) > 20  # the walk itself works
    problems: dict[str, list[str]] = {}
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        found = _problems(response.get_data(as_text=True), message_ids)
        if found:
            problems[path] = found
    for name, html in _after_forms(client, tree).items():
        found = _problems(html, message_ids)
        if found:
            problems[name] = found
    assert problems == {}
