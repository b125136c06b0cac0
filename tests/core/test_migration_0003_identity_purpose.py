"""Migration 0003 gives certificates issued before purposes were recorded the purpose they had:
an Android device's or an Android token's are agent identities, one neither bound nor issued
through a token a Wi-Fi certificate, the rest MDM identities."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from mdm.ground.db import upgrade_database


def test_existing_certificates_get_their_purpose(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    upgrade_database(url, "0002")
    engine = create_engine(url)
    now = "2026-11-01 00:00:00.000000"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO org_units (id, kind, name_ja, name_en, code, created_at, updated_at) "
                "VALUES (1, 'unit', '救急隊', 'Ambulance', 'A01', :now, :now)"
            ),
            {"now": now},
        )
        for device_id, platform in ((1, "apple"), (2, "android")):
            conn.execute(
                text(
                    "INSERT INTO devices (id, platform, udid, is_supervised, enrollment_state, created_at) "
                    "VALUES (:id, :platform, :udid, 0, 'enrolled', :now)"
                ),
                {"id": device_id, "platform": platform, "udid": f"udid-{device_id}", "now": now},
            )
        for token_id, platform in ((1, "apple"), (2, "android")):
            conn.execute(
                text(
                    "INSERT INTO enrollment_tokens (id, token_hash, org_unit_id, platform, max_uses, "
                    "use_count, expires_at, created_at, created_by) "
                    "VALUES (:id, :hash, 1, :platform, 5, 1, :now, :now, 'admin')"
                ),
                {"id": token_id, "hash": f"{token_id:064d}", "platform": platform, "now": now},
            )
        rows = {
            "apple-bound": (1, None),
            "android-bound": (2, 2),
            "android-token-unbound": (None, 2),
            "apple-token-unbound": (None, 1),
            "wifi": (None, None),
        }
        for name, (device_id, token_id) in rows.items():
            conn.execute(
                text(
                    "INSERT INTO device_certificates (fingerprint_sha256, device_id, subject, issuer, "
                    "serial_hex, not_before, not_after, pem, created_at, enrollment_token_id) "
                    "VALUES (:fp, :device, :fp, 'CN=ca', '1', :now, :now, '-', :now, :token)"
                ),
                {"fp": name, "device": device_id, "token": token_id, "now": now},
            )
    upgrade_database(url, "0003")
    with engine.connect() as conn:
        found = dict(conn.execute(text("SELECT fingerprint_sha256, purpose FROM device_certificates")).all())
    engine.dispose()
    assert found == {
        "apple-bound": "mdm_identity",
        "android-bound": "android_agent",
        "android-token-unbound": "android_agent",
        "apple-token-unbound": "mdm_identity",
        "wifi": "wifi",
    }
