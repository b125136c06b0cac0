"""Issue 15 item 13: the log filter keeps secrets out of every record, whatever shape the
message has (URL, name=value, a dict's repr, JSON, an Authorization header, a traceback)."""

from __future__ import annotations

import io
import json
import logging

from mdm.ground.logsetup import JsonFormatter, SecretFilter, redact_text


def test_secret_shapes_are_redacted_and_the_rest_is_kept():
    cases = {
        "GET /enroll/AbC-123_xyz/qr.svg HTTP/1.1": "GET /enroll/[redacted]/qr.svg HTTP/1.1",
        "GET /android/provisioning/s3cr3t/sheet": "GET /android/provisioning/[redacted]/sheet",
        "login failed password=hunter2 user=taro": "login failed password=[redacted] user=taro",
        "{'UserPassword': 'pw-1', 'ssid': 'FD'}": "{'UserPassword': '[redacted]', 'ssid': 'FD'}",
        '{"api_token": "tok-2", "token_id": 7}': '{"api_token": "[redacted]", "token_id": 7}',
        "Authorization: Bearer hk_abcdef.123": "Authorization: Bearer [redacted]",
        "/healthz?token=zz&x=1": "/healthz?token=[redacted]&x=1",
    }
    for raw, expected in cases.items():
        assert redact_text(raw) == expected
        assert redact_text(expected) == expected  # redacting twice changes nothing


def test_the_filter_rewrites_arguments_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(SecretFilter())
    logger = logging.getLogger("tests.security.log_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("challenge=%s for %s", "one-time-777", "/enroll/tok-888")
        try:
            raise ValueError("totp_secret=JBSWY3DPEHPK3PXP")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for secret in ("one-time-777", "tok-888", "JBSWY3DPEHPK3PXP"):
        assert secret not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["message"] == "challenge=[redacted] for /enroll/[redacted]" and first["level"] == "WARNING"
    assert "totp_secret=[redacted]" in second["exc"]


def test_access_log_atoms_are_redacted_when_the_format_reads_them():
    """gunicorn's access line: the request line and any header the format names are redacted as
    they are read (a format may name any request header, an Authorization one included)."""
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from mdm.ground.logsetup import AccessLogger

    config = Config()
    config.set("accesslog", "-")
    config.set("access_log_format", '"%(r)s" %(s)s "%({authorization}i)s" "%({x-unnamed}i)s"')
    access = AccessLogger(config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretFilter())
    for existing in list(access.access_log.handlers):
        access.access_log.removeHandler(existing)
    access.access_log.addHandler(handler)
    request = SimpleNamespace(
        headers=[("Authorization", "Bearer hk_live.secret"), ("Mdm-Signature", "MIAG" + "A" * 4096 + "==")]
    )
    response = SimpleNamespace(status="200 OK", sent=0, headers=[])
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/enroll/tok-999/qr.svg?token=abc",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    access.access(response, request, environ, timedelta(milliseconds=3))
    line = stream.getvalue()
    assert (
        line.strip()
        == '"GET /enroll/[redacted]/qr.svg?token=[redacted] HTTP/1.1" 200 "Bearer [redacted]" "-"'
    )
