"""Mails to people, written in the transaction of what they tell and sent after commit.

`queue_mail` (in the caller's transaction), `due_mails` (read), then per mail `send_mail` and
`record_mail` in its own transaction, so no transaction stays open while the mail server answers
and a server that is down loses nothing: the mail waits and is tried again, up to a limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import MailStatus, OutgoingMail


@dataclass(frozen=True)
class DueMail:
    id: int
    to: str
    subject: str
    body: str
    link_path: str | None


def queue_mail(
    session: Session,
    *,
    kind: str,
    to: str,
    subject: str,
    body: str,
    user_id: int | None = None,
    incident_id: int | None = None,
    link_path: str | None = None,
) -> OutgoingMail:
    mail = OutgoingMail(
        kind=kind,
        to_address=to,
        subject=subject[:255],
        body=body,
        user_id=user_id,
        incident_id=incident_id,
        link_path=link_path,
        status=MailStatus.PENDING,
        created_at=clock.now(),
    )
    session.add(mail)
    session.flush()
    return mail


def due_mails(session: Session, *, limit: int = 50) -> list[DueMail]:
    rows = session.scalars(
        select(OutgoingMail)
        .where(OutgoingMail.status == MailStatus.PENDING)
        .order_by(OutgoingMail.id)
        .limit(limit)
    )
    return [DueMail(m.id, m.to_address, m.subject, m.body, m.link_path) for m in rows]


def with_link(mail: DueMail, public_url: str) -> str:
    """The body, with the console page it is about as a full address."""
    if not mail.link_path:
        return mail.body
    return f"{mail.body.rstrip()}\n\n{public_url.rstrip('/')}{mail.link_path}\n"


def record_mail(session: Session, mail_id: int, error: str | None, *, max_attempts: int) -> None:
    mail = session.get(OutgoingMail, mail_id)
    if mail is None or mail.status != MailStatus.PENDING:
        return
    mail.attempts += 1
    if error is None:
        mail.status = MailStatus.SENT
        mail.sent_at = clock.now()
        mail.last_error = None
        return
    mail.last_error = error[:512]
    if mail.attempts >= max_attempts:
        mail.status = MailStatus.FAILED
