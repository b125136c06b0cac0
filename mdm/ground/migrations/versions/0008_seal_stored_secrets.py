"""seal secrets stored in clear before issue 15 (data only, no schema change)

- profiles.spec and profile_versions.spec: each Wi-Fi passphrase sealed (sealed:v1:..., as
  profiles.secret_settings stores it), with the instance secret `hikeshi db upgrade` passes.
- profile_renderings: shared renderings that carry a passphrase are deleted (made again, without
  it, on first use).
- commands: an InstallProfile whose Payload carries a Wi-Fi password gets that payload without
  it (unsigned; iOS installs unsigned profiles) and, while still undelivered, the marker that has
  it rendered with the secret for its device at delivery.
- device_messages.raw and command_results.raw: UnlockToken and every other secret replaced by
  "[redacted]" (mdm.ground.redaction.strip_raw_message).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import base64
import plistlib
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SEALED_PREFIX = "sealed:v1:"
_PURPOSE = "profile-setting"
# profiles.spec.UUID_NAMESPACE: the profile-level PayloadUUID names the version a command carries.
_UUID_NAMESPACE = uuid.UUID("6f1c3a52-8a4e-5d3b-9f0e-48494b455348")
_PENDING = ("queued", "sent", "not_now")
_WIFI = "com.apple.wifi.managed"


def _secret_key() -> str | None:
    return op.get_context().config.attributes.get("secret_key") if op.get_context().config else None


def _seal_spec(spec: Any, secret_key: str | None) -> Any:
    from mdm.ground.secretbox import seal

    if not isinstance(spec, dict):
        return None
    changed = False
    for payload in spec.get("payloads") or []:
        settings = payload.get("settings") if isinstance(payload, dict) else None
        if payload.get("kind") != "wifi" or not isinstance(settings, dict):
            continue
        value = settings.get("password")
        if not isinstance(value, str) or value.startswith(_SEALED_PREFIX):
            continue
        if secret_key is None:
            raise RuntimeError(
                "stored profiles hold Wi-Fi passwords in clear; run `hikeshi db upgrade`, which seals "
                "them with the instance secret (HIKESHI_SECRET_KEY or instance/secret_key)"
            )
        sealed = seal(secret_key, _PURPOSE, value.encode("utf-8"))
        settings["password"] = _SEALED_PREFIX + base64.b64encode(sealed).decode("ascii")
        changed = True
    return spec if changed else None


def _unsigned(content: bytes) -> bytes:
    if content.lstrip().startswith(b"<?xml") or content.startswith(b"bplist00"):
        return content
    from asn1crypto import cms

    info = cms.ContentInfo.load(content)
    return bytes(info["content"]["encap_content_info"]["content"].native)


def _without_passwords(document: dict[str, Any]) -> bool:
    removed = False
    for payload in document.get("PayloadContent") or []:
        if isinstance(payload, dict) and payload.get("PayloadType") == _WIFI:
            for key in ("Password",):
                if key in payload:
                    del payload[key]
                    removed = True
            eap = payload.get("EAPClientConfiguration")
            if isinstance(eap, dict) and "UserPassword" in eap:
                del eap["UserPassword"]
                removed = True
    return removed


def upgrade() -> None:
    from mdm.ground.redaction import strip_raw_message

    bind = op.get_bind()
    secret_key = _secret_key()

    profiles = sa.table("profiles", sa.column("id", sa.Integer), sa.column("identifier", sa.String),
                        sa.column("spec", _JSON))
    versions = sa.table("profile_versions", sa.column("id", sa.Integer), sa.column("profile_id", sa.Integer),
                        sa.column("version", sa.Integer), sa.column("spec", _JSON))
    renderings = sa.table("profile_renderings", sa.column("id", sa.Integer), sa.column("profile_id", sa.Integer))
    with_secrets: set[int] = set()
    for row in bind.execute(sa.select(profiles.c.id, profiles.c.spec)).all():
        sealed = _seal_spec(row.spec, secret_key)
        if sealed is not None:
            with_secrets.add(row.id)
            bind.execute(profiles.update().where(profiles.c.id == row.id).values(spec=sealed))
    for row in bind.execute(sa.select(versions.c.id, versions.c.profile_id, versions.c.spec)).all():
        sealed = _seal_spec(row.spec, secret_key)
        if sealed is not None:
            with_secrets.add(row.profile_id)
            bind.execute(versions.update().where(versions.c.id == row.id).values(spec=sealed))
    if with_secrets:
        bind.execute(renderings.delete().where(renderings.c.profile_id.in_(sorted(with_secrets))))

    # PayloadUUID of each (profile, version) → marker, to render an undelivered install at delivery.
    markers: dict[str, dict[str, int]] = {}
    identifiers = dict(bind.execute(sa.select(profiles.c.id, profiles.c.identifier)).all())
    for row in bind.execute(sa.select(versions.c.profile_id, versions.c.version)).all():
        identifier = identifiers.get(row.profile_id)
        if identifier is not None:
            key = str(uuid.uuid5(_UUID_NAMESPACE, f"profile:{identifier}:v{row.version}")).upper()
            markers[key] = {"profile_id": row.profile_id, "version": row.version}

    commands = sa.table("commands", sa.column("id", sa.Integer), sa.column("request_type", sa.String),
                        sa.column("status", sa.String), sa.column("params", _JSON))
    rows = bind.execute(
        sa.select(commands.c.id, commands.c.status, commands.c.params).where(
            commands.c.request_type == "InstallProfile"
        )
    ).all()
    for row in rows:
        params = row.params if isinstance(row.params, dict) else None
        if not params or not isinstance(params.get("Payload"), str):
            continue
        try:
            document = plistlib.loads(_unsigned(base64.b64decode(params["Payload"])))
        except Exception:  # noqa: BLE001 - not a profile we can read: nothing of ours to strip
            continue
        if not isinstance(document, dict) or not _without_passwords(document):
            continue
        params = dict(params)
        params["Payload"] = base64.b64encode(plistlib.dumps(document, fmt=plistlib.FMT_XML)).decode("ascii")
        marker = markers.get(str(document.get("PayloadUUID", "")).upper())
        if row.status in _PENDING and marker is not None:
            params["DeviceIdentity"] = marker
        bind.execute(commands.update().where(commands.c.id == row.id).values(params=params))

    for name in ("device_messages", "command_results"):
        table = sa.table(name, sa.column("id", sa.Integer), sa.column("raw", sa.LargeBinary))
        last = 0
        while True:
            batch = bind.execute(
                sa.select(table.c.id, table.c.raw).where(table.c.id > last).order_by(table.c.id).limit(500)
            ).all()
            if not batch:
                break
            for row in batch:
                last = row.id
                raw = bytes(row.raw or b"")
                clean = strip_raw_message(raw)
                if clean != raw:
                    bind.execute(table.update().where(table.c.id == row.id).values(raw=clean))


def downgrade() -> None:
    # Sealed and stripped secrets are not put back in clear.
    pass
