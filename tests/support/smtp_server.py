"""A real SMTP server in the test process (aiosmtpd): it speaks ESMTP with AUTH PLAIN/LOGIN and
keeps every message it accepts, with the login it was sent under."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None


@dataclass
class SmtpServer:
    port: int
    user: str | None = None
    password: str | None = None
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(*, user: str | None = None, password: str | None = None) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1; with `user`, a client must sign in with that user and password."""
    server = SmtpServer(_free_port(), user, password)

    class Handler:
        async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
            message = message_from_bytes(envelope.original_content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            login = session.auth_data if session.authenticated else None
            server.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, login))
            return "250 OK"

    def authenticate(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == user
            and data.password.decode() == (password or "")
        )
        server.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, auth_data=data.login.decode() if ok else None)

    options: dict[str, Any] = {}
    if user is not None:
        options = {"authenticator": authenticate, "auth_require_tls": False, "auth_required": True}
    with warnings.catch_warnings():
        # AUTH without TLS on loopback is what this test server is for.
        warnings.simplefilter("ignore", UserWarning)
        controller = Controller(Handler(), hostname="127.0.0.1", port=server.port, **options)
        controller.start()
    try:
        yield server
    finally:
        controller.stop()
