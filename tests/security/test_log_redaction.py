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
