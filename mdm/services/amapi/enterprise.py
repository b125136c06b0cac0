"""The enterprise binding: signup URL → the administrator signs up in a browser → enterprise.

1. `start_signup`: signupUrls.create with the service account's project and the console's
   callback URL; the administrator opens the answered URL and signs up with a Google account
   (managed Google Play Accounts enterprise).
2. Google sends the browser back to the callback with `enterpriseToken`; `complete_signup` calls
   enterprises.create with it and the signup URL's name, and stores the enterprise's name.
3. `set_notifications`: enterprises.patch names the Pub/Sub topic the enterprise publishes to
   (ENROLLMENT, STATUS_REPORT, COMMAND, USAGE_LOGS) and stores the pull subscription Hikeshi reads.

Each step is stored and audited; nothing secret is in the row but the sealed service account.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.amapi_client import AmapiClient
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import AmapiEnterprise

# How long a started signup is offered again instead of a new one.
SIGNUP_REUSE = timedelta(hours=1)
NOTIFICATION_TYPES = ("ENROLLMENT", "STATUS_REPORT", "COMMAND", "USAGE_LOGS")
_ENTERPRISE_TOKEN = re.compile(r"^[A-Za-z0-9_\-.~]{1,512}$")
_TOPIC = re.compile(r"^projects/[a-z][a-z0-9\-]{4,61}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
_SUBSCRIPTION = re.compile(
    r"^projects/[a-z][a-z0-9\-]{4,61}[a-z0-9]/subscriptions/[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$"
)


class EnterpriseError(ValueError):
    """A step that cannot be done now or with these values; `field` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def enterprise_row(session: Session) -> AmapiEnterprise | None:
    return session.scalars(select(AmapiEnterprise).order_by(AmapiEnterprise.id).limit(1)).first()


def ensure_enterprise_row(session: Session) -> AmapiEnterprise:
    row = enterprise_row(session)
    if row is None:
        row = AmapiEnterprise(created_at=clock.now(), updated_at=clock.now())
        session.add(row)
        session.flush()
    return row


def bound_enterprise(session: Session) -> str | None:
    """`enterprises/LC…` once bound, else None."""
    row = enterprise_row(session)
    return row.enterprise_name if row is not None else None


def status(session: Session) -> dict[str, Any]:
    """What a page or an API answer may show: never the key."""
    row = enterprise_row(session)
    if row is None:
        return {"state": "unconfigured", "credential": None, "enterprise_name": None}
    state = (
        "bound"
        if row.enterprise_name
        else "signup_started"
        if row.signup_url_name
        else "credential_stored"
        if row.service_account_sealed
        else "unconfigured"
    )
    return {
        "state": state,
        "credential": (
            {
                "client_email": row.service_account_email,
                "project_id": row.project_id,
                "private_key_id": row.service_account_key_id,
            }
            if row.service_account_sealed
            else None
        ),
        "enterprise_name": row.enterprise_name,
        "display_name": row.display_name,
        "signup_url": row.signup_url if not row.enterprise_name else None,
        "pubsub_topic": row.pubsub_topic,
        "pubsub_subscription": row.pubsub_subscription,
        "updated_at": row.updated_at,
        "updated_by": row.updated_by,
    }


def record_change(
    session: Session, row: AmapiEnterprise, actor: Actor, action: str, details: dict[str, Any]
) -> None:
    """Stamp who changed the binding and when, and audit it: every change to the row ends so."""
    row.updated_at = clock.now()
    row.updated_by = actor.name
    session.flush()
    record_event(session, actor, action, "amapi_enterprise", row.id, details)


def _row_with_credential(session: Session) -> AmapiEnterprise:
    row = enterprise_row(session)
    if row is None or row.service_account_sealed is None or not row.project_id:
        raise EnterpriseError("service_account", "upload the service account's JSON key first")
    return row


def start_signup(
    session: Session, client: AmapiClient, *, callback_url: str, actor: Actor, admin_email: str | None = None
) -> str:
    """Ask Google for a signup URL; stored with its name. Returns the URL the administrator opens."""
    row = _row_with_credential(session)
    if row.enterprise_name:
        raise EnterpriseError("enterprise", f"already bound to {row.enterprise_name}")
    if not callback_url.startswith(("https://", "http://")):
        raise EnterpriseError("callback_url", "must be an http(s) URL")
    if (
        row.signup_url
        and row.signup_started_at is not None
        and clock.now() - row.signup_started_at < SIGNUP_REUSE
        and not admin_email
    ):
        # A signup under way is offered again (a second click, another tab): its enterprise
        # token, whenever Google hands it over, still matches the stored signup URL name.
        return row.signup_url
    params = {"projectId": row.project_id, "callbackUrl": callback_url}
    if admin_email:
        params["adminEmail"] = admin_email
    answer = client.call("POST", "signupUrls", params=params)
    name, url = answer.get("name"), answer.get("url")
    if not isinstance(name, str) or not isinstance(url, str) or not name or not url:
        raise EnterpriseError("signup", "Google's answer has no signup URL")
    row.signup_url_name = name[:255]
    row.signup_url = url[:2048]
    row.signup_started_at = clock.now()
    record_change(session, row, actor, "amapi.signup_started", {"signup_url_name": row.signup_url_name})
    return url


def complete_signup(
    session: Session, client: AmapiClient, *, enterprise_token: str, display_name: str | None, actor: Actor
) -> AmapiEnterprise:
    """enterprises.create with the token Google gave the administrator's browser; stored."""
    row = _row_with_credential(session)
    if row.enterprise_name:
        raise EnterpriseError("enterprise", f"already bound to {row.enterprise_name}")
    if not row.signup_url_name:
        raise EnterpriseError("signup", "start the signup first")
    if not isinstance(enterprise_token, str) or not _ENTERPRISE_TOKEN.match(enterprise_token):
        raise EnterpriseError("enterprise_token", "not an enterprise token from Google's signup page")
    body: dict[str, Any] = {}
    if display_name:
        body["enterpriseDisplayName"] = display_name[:255]
    answer = client.call(
        "POST",
        "enterprises",
        params={
            "projectId": row.project_id,
            "signupUrlName": row.signup_url_name,
            "enterpriseToken": enterprise_token,
        },
        body=body,
    )
    name = answer.get("name")
    if not isinstance(name, str) or not name.startswith("enterprises/") or len(name) > 128:
        raise EnterpriseError("enterprise", "Google's answer names no enterprise")
    row.enterprise_name = name
    row.display_name = (answer.get("enterpriseDisplayName") or display_name or None) and str(
        answer.get("enterpriseDisplayName") or display_name
    )[:255]
    record_change(
        session,
        row,
        actor,
        "amapi.enterprise_bound",
        {"enterprise_name": name, "display_name": row.display_name, "project_id": row.project_id},
    )
    return row


def set_notifications(
    session: Session, client: AmapiClient, *, topic: str, subscription: str, actor: Actor
) -> AmapiEnterprise:
    """Have the enterprise publish its notifications to `topic` (which must exist and let
    android-cloud-policy@system.gserviceaccount.com publish) and read them from `subscription`."""
    row = _row_with_credential(session)
    if not row.enterprise_name:
        raise EnterpriseError("enterprise", "bind the enterprise first")
    if not _TOPIC.match(topic or ""):
        raise EnterpriseError("pubsub_topic", "must be projects/<project>/topics/<topic>")
    if not _SUBSCRIPTION.match(subscription or ""):
        raise EnterpriseError("pubsub_subscription", "must be projects/<project>/subscriptions/<name>")
    client.call(
        "PATCH",
        row.enterprise_name,
        params={"updateMask": "pubsubTopic,enabledNotificationTypes"},
        body={"pubsubTopic": topic, "enabledNotificationTypes": list(NOTIFICATION_TYPES)},
    )
    before = {"pubsub_topic": row.pubsub_topic, "pubsub_subscription": row.pubsub_subscription}
    row.pubsub_topic = topic
    row.pubsub_subscription = subscription
    record_change(
        session,
        row,
        actor,
        "amapi.notifications_set",
        {
            "before": before,
            "pubsub_topic": topic,
            "pubsub_subscription": subscription,
            "types": list(NOTIFICATION_TYPES),
        },
    )
    return row
