"""Translations: every message of the console has a Japanese translation, and the catalogs
compile from the .po sources at start-up (a fresh checkout needs no build step)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir

from web.i18n import SOURCE_DIR, compile_catalogs, read_catalog

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None, "N_": None}
METHODS = [("web/**.py", "python"), ("web/console/templates/**.html", "jinja2")]


def _extracted() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map=METHODS, keywords=KEYWORDS, options_map={"web/console/templates/**.html": {}}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return {m for m in found if m}


def test_every_console_message_has_a_japanese_translation() -> None:
    catalog = read_catalog(sorted((SOURCE_DIR / "ja" / "LC_MESSAGES").glob("*.po")), "ja")
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    extracted = _extracted()
    assert len(extracted) > 250  # the extraction itself works
    missing = sorted(extracted - translated)
    assert missing == [], f"add Japanese translations to web/translations/ja (pybabel update): {missing}"


def test_catalogs_compile_into_the_instance_folder(tmp_path: Path) -> None:
    written = compile_catalogs(SOURCE_DIR, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == ["ja/LC_MESSAGES/messages.mo"]
    assert compile_catalogs(SOURCE_DIR, tmp_path) == []  # up to date: not rewritten


def test_a_message_translated_in_two_files_is_refused(tmp_path: Path) -> None:
    messages = tmp_path / "ja" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    entry = 'msgid "Lock now"\nmsgstr "今すぐロック"\n'
    (messages / "messages.po").write_text(entry, encoding="utf-8")
    (messages / "hotline.po").write_text(entry, encoding="utf-8")
    try:
        compile_catalogs(tmp_path, tmp_path / "out")
    except ValueError as exc:
        assert "Lock now" in str(exc)
    else:
        raise AssertionError("a duplicate translation was accepted")


def test_japanese_is_the_default_and_english_a_switch(client: object) -> None:
    japanese = client.get("/console/login").get_data(as_text=True)  # type: ignore[attr-defined]
    assert '<html lang="ja">' in japanese and "ユーザー名" in japanese
    client.set_cookie("hikeshi_lang", "en")  # type: ignore[attr-defined]
    english = client.get("/console/login").get_data(as_text=True)  # type: ignore[attr-defined]
    assert '<html lang="en">' in english and "User name" in english
