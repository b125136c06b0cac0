"""Japanese by default, English on request: Flask-Babel with catalogs compiled at start-up.

Message ids are English; web/translations/ja holds the Japanese catalog. The .po files are the
source; they are compiled into the instance folder when the .mo there is missing or older, so a
fresh checkout or `pip install` works without a separate build step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
    """Compile every messages.po under `source` into `target`; returns the .mo files written."""
    written = []
    for po in sorted(source.glob("*/LC_MESSAGES/*.po")):
        mo = target / po.relative_to(source).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=po.parts[-3])
        # Write beside the target and rename: several workers may compile at the same moment.
        fd, tmp = tempfile.mkstemp(dir=mo.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            write_mo(out, catalog)
        os.replace(tmp, mo)
        written.append(mo)
    return written


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
