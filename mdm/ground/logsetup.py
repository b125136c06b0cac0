"""Logging for every process (`hikeshi serve` master and workers, the scheduler, the CLI): one
handler on stderr, one format, and a filter that keeps secrets out of every line.

HIKESHI_LOG_FORMAT: `text` (default) or `json` (one JSON object per line: time, level, logger,
pid, message, and exc when there is a traceback). HIKESHI_LOG_LEVEL: DEBUG, INFO, WARNING...
(INFO under `hikeshi serve` and `hikeshi scheduler`, WARNING for the other commands).

These are read through mdm.ground.config's table, not from Settings: logging must work before the settings
load and when they cannot.

The filter rewrites each record's text: enrollment URLs (/enroll/<token>, the Android
provisioning path) lose their secret path segment, `name=value` / `"name": "value"` pairs whose
name is a secret (mdm.ground.redaction) lose their value, and `Bearer <token>` loses the token.
gunicorn's access and error logs go through the same handler (`AccessLogger`), so a request
line that carries an enrollment secret is logged as /enroll/[redacted].
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.glogging import SafeAtoms

from mdm.ground.config import LOG_FORMAT, LOG_LEVEL
from mdm.ground.redaction import REDACTED, is_secret_key

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_HANDLER_NAME = "hikeshi"

# URL paths whose next segment is a secret: the enrollment token of an Apple QR code, the
# Android device-owner provisioning secret.
_SECRET_PATHS = re.compile(r"(/enroll/|/android/provisioning/)([^/?#\s\"']+)")
_NAME_SEP = re.compile(r"""(?P<quote>["']?)(?P<name>[A-Za-z][A-Za-z0-9_.-]{0,63})(?P=quote)\s*[=:]\s*""")
_VALUE = re.compile(r""""[^"]*"|'[^']*'|[^\s&,;}\]"']+""")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def redact_text(text: str) -> str:
    """`text` with secrets replaced by [redacted] (see the module docstring)."""
    text = _SECRET_PATHS.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)

    return _redact_pairs(text)


def _redact_pairs(text: str) -> str:
    # Names are matched one after the other, values looked at only after a secret name, so a
    # value can never hide the next name ("ValueError: totp_secret=...").
    out: list[str] = []
    pos = 0
    for match in _NAME_SEP.finditer(text):
        if match.start() < pos or not is_secret_key(match.group("name")):
            continue
        value = _VALUE.match(text, match.end())
        if value is None or _already_redacted(text, match.end()):
            continue
        quote = value.group(0)[0] if value.group(0)[:1] in ("'", '"') else ""
        out.append(text[pos : match.end()] + f"{quote}{REDACTED}{quote}")
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def _already_redacted(text: str, at: int) -> bool:
    # A line redacted twice (an access-log atom, then the whole line) must not become "[redacted]]".
    if text[at : at + 1] in ("'", '"'):
        at += 1
    return text.startswith(REDACTED, at)


class SecretFilter(logging.Filter):
    """Rewrites a record's message (and traceback) so no secret reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def log_format() -> str:
    value: str = LOG_FORMAT.read()
    return value


def log_level(default: str) -> int:
    name = LOG_LEVEL.read() or default.strip().upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.getLevelName(default.upper())


def make_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format() == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(SecretFilter())
    return handler


def configure_logging(
    default_level: str = "INFO", *, unless_configured: bool = False
) -> logging.Handler | None:
    """Route every logger to one stderr handler with the chosen format and the secret filter.

    Idempotent: a second call replaces our handler instead of adding another. With
    `unless_configured`, a process whose logging someone else set up (a test runner, an embedding
    application) is left as it is."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == _HANDLER_NAME]
    if unless_configured and len(root.handlers) > len(ours):
        return None
    for existing in ours:
        root.removeHandler(existing)
    handler = make_handler()
    root.addHandler(handler)
    root.setLevel(log_level(default_level))
    logging.captureWarnings(True)
    return handler


class _RedactedAtoms(SafeAtoms):
    """gunicorn's access-log atoms, each redacted when the format reads it. Only the few the
    format names are read: redacting all of them (every request header, the Mdm-Signature's
    kilobytes of base64 among them) cost more CPU than the device's request itself."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return redact_text(value) if isinstance(value, str) else value


class AccessLogger(GunicornLogger):
    """gunicorn's logger, writing its error and access logs through our handler (same format,
    same secret filter); request lines, paths, query strings and referers are redacted too."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        handler = configure_logging()
        assert handler is not None
        for log in (self.error_log, self.access_log):
            for existing in list(log.handlers):
                log.removeHandler(existing)
            log.addHandler(handler)
            log.propagate = False
        self.error_log.setLevel(log_level("INFO"))

    atoms_wrapper_class = _RedactedAtoms
