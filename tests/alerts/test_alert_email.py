"""Alert e-mail through a real SMTP conversation on loopback: warnings and above, recent only,
once each; a refused connection is retried and its error kept."""

from __future__ import annotations

import email
from dataclasses import replace
from datetime import timedelta

from mdm.ground.models import Alert
from mdm.roots.scheduler.jobs import JobContext, alert_email
from mdm.services.alerts.service import raise_alert
from tests.alerts.smtp_sink import smtp_sink
from tests.support.factories import make_device


def test_alerts_are_mailed_once(session, session_factory, settings, frozen_clock):
    assert alert_email(JobContext(session_factory, settings, "t")) == {"enabled": False}
    device = make_device(session)
    old = raise_alert(session, "old", "critical", "two days old")
    frozen_clock.advance(days=2)
    critical = raise_alert(session, "device.lost_mode", "critical", "救急1隊のiPadが紛失", device=device)
    raise_alert(session, "note", "info", "info is not mailed")
    session.commit()
    with smtp_sink() as sink:
        mail_settings = replace(
            settings,
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            smtp_starttls=False,
            smtp_from="mdm@fire.example.jp",
            alert_email_to=("it@fire.example.jp", "duty@fire.example.jp"),
        )
        ctx = JobContext(session_factory, mail_settings, "t")
        assert alert_email(ctx) == {"enabled": True, "attempted": 1, "sent": 1}
        assert alert_email(ctx) == {"enabled": True, "attempted": 0, "sent": 0}
    [(sender, recipients, data)] = sink.messages
    assert sender == "mdm@fire.example.jp" and recipients == ["it@fire.example.jp", "duty@fire.example.jp"]
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert "救急1隊のiPadが紛失" in message["Subject"]
    assert device.udid in message.get_content()
    session.expire_all()
    assert session.get(Alert, critical.id).emailed_at == frozen_clock.current
    assert session.get(Alert, old.id).emailed_at is None


def test_unreachable_smtp_is_retried_with_the_error_kept(session, session_factory, settings, frozen_clock):
    with smtp_sink() as sink:
        port = sink.port
    alert = raise_alert(session, "x", "warning", "mail me")
    session.commit()
    mail_settings = replace(
        settings, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, alert_email_to=("a@b.jp",)
    )
    ctx = JobContext(session_factory, replace(mail_settings, webhook_max_attempts=2), "t")
    assert alert_email(ctx)["sent"] == 0
    frozen_clock.advance(minutes=1)
    assert alert_email(ctx)["attempted"] == 1
    assert alert_email(ctx)["attempted"] == 0  # gave up after two
    session.expire_all()
    row = session.get(Alert, alert.id)
    assert row.email_attempts == 2 and "ConnectionRefused" in row.email_error and row.emailed_at is None
    assert frozen_clock.current - row.created_at < timedelta(days=1)
