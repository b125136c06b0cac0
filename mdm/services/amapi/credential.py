"""The enterprise's Google service account: its JSON key file uploaded, checked, sealed.

The key file is what Google Cloud's console downloads for a service account (IAM → Service
accounts → Keys → JSON): `type` "service_account", `project_id`, `private_key_id`, `private_key`
(PEM), `client_email`, `token_uri`. It is a credential for the whole fleet's management, so it is
sealed at rest (mdm.ground.secretbox), never shown again (pages and answers show the account's
e-mail, project and key id only), and audited without the key.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.models import AmapiEnterprise
from mdm.ground.secretbox import SecretBoxError, seal, unseal
from mdm.services.amapi.enterprise import ensure_enterprise_row, enterprise_row, record_change

PURPOSE = "amapi-service-account"
MAX_KEY_FILE_BYTES = 64 * 1024
REQUIRED_TEXT = ("project_id", "private_key_id", "private_key", "client_email", "token_uri")


class CredentialError(ValueError):
    """The upload is not a usable service-account key; the message names the field."""


def read_service_account(data: bytes) -> dict[str, Any]:
    """The key file's fields, checked: a JSON object of type service_account whose private key
    is an RSA key in PEM that parses, with the fields the OAuth2 flow needs."""
    if not data or len(data) > MAX_KEY_FILE_BYTES:
        raise CredentialError(f"service_account: empty or larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CredentialError("service_account: not a JSON key file") from None
    if not isinstance(info, dict):
        raise CredentialError("service_account: the JSON is not an object")
    if info.get("type") != "service_account":
        raise CredentialError("service_account.type: must be service_account (a service account's JSON key)")
    for name in REQUIRED_TEXT:
        value = info.get(name)
        if not isinstance(value, str) or not value.strip():
            raise CredentialError(f"service_account.{name}: missing")
    if "@" not in info["client_email"] or len(info["client_email"]) > 255:
        raise CredentialError("service_account.client_email: not an e-mail address")
    if len(info["project_id"]) > 128 or len(info["private_key_id"]) > 64:
        raise CredentialError("service_account: project_id or private_key_id too long")
    token_uri = urlsplit(info["token_uri"])
    if token_uri.scheme not in ("https", "http") or not token_uri.hostname:
        raise CredentialError("service_account.token_uri: not an http(s) URL")
    try:
        key = load_pem_private_key(info["private_key"].encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        # The parser's message could quote the key: it is not passed on.
        raise CredentialError("service_account.private_key: not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise CredentialError("service_account.private_key: must be an RSA key of at least 2048 bits")
    return info


def store_credential(session: Session, settings: Settings, data: bytes, *, actor: Actor) -> AmapiEnterprise:
    """Store the uploaded key file (sealed) in place of the current one; audited without the key."""
    info = read_service_account(data)
    row = ensure_enterprise_row(session)
    replaced = row.service_account_sealed is not None
    before = {"client_email": row.service_account_email, "project_id": row.project_id}
    if row.enterprise_name and row.project_id and row.project_id != info["project_id"]:
        # The enterprise belongs to the project it was created with; another project's account
        # cannot manage it.
        raise CredentialError(
            f"service_account.project_id: the enterprise was created in project {row.project_id}, "
            f"not {info['project_id']}"
        )
    row.service_account_sealed = seal(settings.secret_key, PURPOSE, json.dumps(info).encode("utf-8"))
    row.service_account_email = info["client_email"]
    row.service_account_key_id = info["private_key_id"]
    row.project_id = info["project_id"]
    record_change(
        session,
        row,
        actor,
        "amapi.credential_uploaded",
        {
            "client_email": info["client_email"],
            "project_id": info["project_id"],
            "private_key_id": info["private_key_id"],
            "replaced": replaced,
            "before": before if replaced else None,
        },
    )
    return row


def service_account_info(session: Session, settings: Settings) -> dict[str, Any] | None:
    """The stored key file, unsealed (for the client only); None when none was uploaded."""
    row = enterprise_row(session)
    if row is None or row.service_account_sealed is None:
        return None
    try:
        info = json.loads(unseal(settings.secret_key, PURPOSE, row.service_account_sealed))
    except SecretBoxError as exc:
        raise CredentialError(f"service_account: {exc}") from None
    return info if isinstance(info, dict) else None
