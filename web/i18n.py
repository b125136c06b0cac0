"""Japanese by default, English on request: Flask-Babel with catalogs compiled at start-up.

Message ids are English; web/translations/ja holds the Japanese catalog. The .po files are the
source; they are compiled into the instance folder when the .mo there is missing or older, so a
fresh checkout or `pip install` works without a separate build step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, request
from flask_babel import Babel

SOURCE_DIR = Path(__file__).parent / "translations"
LOCALES = ("ja", "en")
DEFAULT_LOCALE = "ja"
LOCALE_COOKIE = "hikeshi_lang"


def N_(message: str) -> str:
    """Mark a message for extraction without translating it yet (it is translated where shown)."""
    return message


def compile_catalogs(source: Path, target: Path) -> list[Path]:
    """Compile each locale's .po files into one messages.mo under `target`; returns those written.

    A locale may keep its messages in several .po files (one per feature area: messages.po,
    hotline.po, ...), merged here, so areas of the console are translated without editing one
    shared file.
    """
    written = []
    for messages_dir in sorted(source.glob("*/LC_MESSAGES")):
        sources = sorted(messages_dir.glob("*.po"))
        if not sources:
            continue
        mo = target / messages_dir.relative_to(source) / "messages.mo"
        newest = max(po.stat().st_mtime for po in sources)
        if mo.exists() and mo.stat().st_mtime >= newest:
            continue
        catalog = read_catalog(sources, messages_dir.parent.name)
        mo.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: several workers may compile at the same moment.
        fd, tmp = tempfile.mkstemp(dir=mo.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            write_mo(out, catalog)
        os.replace(tmp, mo)
        written.append(mo)
    return written


def read_catalog(sources: list[Path], locale: str) -> Catalog:
    """One catalog from several .po files; a message id defined twice is a mistake and refused."""
    merged = Catalog(locale=locale)
    for po in sources:
        with po.open("rb") as fh:
            part = read_po(fh, locale=locale)
        for message in part:
            if not message.id:
                continue
            if message.id in merged:
                raise ValueError(f"{po}: message {message.id!r} is already translated in another file")
            merged[message.id] = message
    return merged


def select_locale() -> str:
    chosen = request.cookies.get(LOCALE_COOKIE)
    return chosen if chosen in LOCALES else DEFAULT_LOCALE


def init_app(app: Flask, instance_path: Path) -> None:
    compiled = instance_path / "translations"
    compile_catalogs(SOURCE_DIR, compiled)
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LOCALE
    app.config["BABEL_DEFAULT_TIMEZONE"] = "Asia/Tokyo"
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compiled)
    Babel(app, locale_selector=select_locale)
