"""One device must not stop the alert e-mail: device-supplied text (an app's name) never becomes
a mail header, and each mail or webhook that fails, fails alone with its error recorded."""

from __future__ import annotations

import email
import email.policy
import socket
from dataclasses import replace
from typing import Any

from mdm.ground.audit import SYSTEM
from mdm.ground.models import Alert, DeliveryStatus, WebhookDelivery
from mdm.roots.scheduler.jobs import JobContext, alert_email, webhook_delivery
from mdm.services.alerts.email import header_text
from mdm.services.alerts.service import raise_alert
from mdm.services.alerts.webhooks import create_webhook
from tests.alerts.receiver import webhook_receiver
from tests.alerts.smtp_sink import smtp_sink
from tests.support.factories import make_device

HOSTILE_APP = "Innocent\nBcc: attacker@example.invalid"


def _mail_settings(settings: Any, port: int) -> Any:
    return replace(
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="mdm@fire.example.jp",
        alert_email_to=("it@fire.example.jp",),
    )


def _unauthorized_app_alert(session: Any, device: Any, name: str, identifier: str) -> Alert:
    # The title the unauthorized-app rule writes (mdm.services.compliance.rules), with the device's app name.
    return raise_alert(
        session,
        "compliance.unauthorized_app",
        "critical",
        f"Unauthorized app installed: {name} ({identifier})",
        device=device,
        details={"identifier": identifier, "name": name},
    )


def test_app_name_with_a_header_is_mailed_as_text_and_later_alerts_still_go(
    session: Any, session_factory: Any, settings: Any, frozen_clock: Any
) -> None:
    device = make_device(session)
    hostile = _unauthorized_app_alert(session, device, HOSTILE_APP, "com.example.innocent")
    later = raise_alert(session, "device.lost_mode", "critical", "救急1隊のiPadが紛失", device=device)
    session.commit()
    with smtp_sink() as sink:
        ctx = JobContext(session_factory, _mail_settings(settings, sink.port), "t")
        assert alert_email(ctx) == {"enabled": True, "attempted": 2, "sent": 2}
        assert alert_email(ctx)["attempted"] == 0  # every run after that is not stuck either
    assert len(sink.messages) == 2
    for _sender, recipients, data in sink.messages:
        assert recipients == ["it@fire.example.jp"]  # nobody was added by the app's name
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert message["Bcc"] is None and "attacker" not in message.get("To", "")
    first = email.message_from_bytes(sink.messages[0][2], policy=email.policy.default)
    assert (
        first["Subject"] == "[Hikeshi MDM][critical] Unauthorized app installed: Innocent Bcc: "
        "attacker@example.invalid (com.example.innocent)"
    )
    # The body keeps the name, on lines of its own, where it is only text.
    assert "attacker@example.invalid" in first.get_content()
    session.expire_all()
    assert session.get(Alert, hostile.id).emailed_at is not None
    assert session.get(Alert, later.id).emailed_at is not None


def test_a_refused_mail_fails_alone_with_its_error_recorded(
    session: Any, session_factory: Any, settings: Any, frozen_clock: Any
) -> None:
    device = make_device(session)
    refused = _unauthorized_app_alert(session, device, "FILTERME", "com.example.filtered")
    after = raise_alert(session, "device.lost_mode", "critical", "lost", device=device)
    session.commit()
    with smtp_sink(refuse_containing=[b"FILTERME"]) as sink:
        ctx = JobContext(session_factory, _mail_settings(settings, sink.port), "t")
        assert alert_email(ctx) == {"enabled": True, "attempted": 2, "sent": 1}
    assert len(sink.messages) == 1
    session.expire_all()
    row = session.get(Alert, refused.id)
    assert row.emailed_at is None and row.email_attempts == 1
    assert "SMTPDataError" in row.email_error and "554" in row.email_error
    assert session.get(Alert, after.id).emailed_at is not None


def test_header_text_removes_every_kind_of_line_break() -> None:
    for brk in ("\r\n", "\r", "\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\x00"):
        assert header_text(f"a{brk}Bcc: x@y") == "a Bcc: x@y"
    assert len(header_text("x" * 1000)) == 200


def test_a_webhook_that_cannot_be_posted_fails_alone(
    session: Any, session_factory: Any, settings: Any, frozen_clock: Any
) -> None:
    with webhook_receiver() as receiver:
        # Sorted by name, the broken one comes first.
        with socket.socket() as closed:  # a port nobody listens on: the connection is refused
            closed.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
        broken, _ = create_webhook(
            session,
            SYSTEM,
            "a-broken",
            dead_url,
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
        good, _ = create_webhook(
            session,
            SYSTEM,
            "b-good",
            receiver.url,
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
        raise_alert(session, "x", "critical", "an alert")
        session.commit()
        result = webhook_delivery(JobContext(session_factory, settings, "t"))
    assert result == {"attempted": 2, "delivered": 1}
    assert len(receiver.requests) == 1
    session.expire_all()
    rows = {d.webhook_id: d for d in session.query(WebhookDelivery).all()}
    assert rows[good.id].status == DeliveryStatus.DELIVERED
    assert rows[broken.id].status == DeliveryStatus.PENDING and rows[broken.id].last_error
