"""The ABM server token: Hikeshi's certificate out, ABM's `.p7m` (real `openssl smime -encrypt`)
in, decrypted and kept sealed; expiry warned about like the push certificate's."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import AdeServerToken, AdeTokenKey, AuditEvent
from mdm.services.ade.server_token import credentials_of, expiry_warning
from tests.ade.conftest import abm_token, run_cli, token_fields


def _certificate(tmp_path: Path) -> Path:
    out = tmp_path / "abm-cert.pem"
    result = run_cli("ade", "certificate", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_token_encrypted_by_openssl_to_our_certificate_is_stored_sealed(
    cli_env: Any, session: Session, tmp_path: Path
) -> None:
    cert = _certificate(tmp_path)
    assert b"PRIVATE KEY" not in cert.read_bytes()
    # Asking again offers the same certificate: ABM keeps the one uploaded.
    assert _certificate(tmp_path / "again").read_bytes() == cert.read_bytes()
    expiry = clock.now() + timedelta(days=365)
    p7m = abm_token(cert, tmp_path / "token.p7m", token_fields(expiry))

    result = run_cli("ade", "upload-token", str(p7m))
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.output

    session.rollback()  # end the read snapshot to see what the CLI wrote
    session.expire_all()
    row = session.scalars(select(AdeServerToken)).one()
    assert row.consumer_key == "CK_3f2a9c1e" and row.active
    assert abs(row.access_token_expiry - expiry) < timedelta(seconds=1)
    # Secrets are not in clear in the row; they come back only through the instance secret.
    for secret in (b"CS_5b7d0a", b"AT_9e8f7a", b"AS_1c2d3e"):
        assert secret not in row.secrets_sealed
    key_row = session.scalars(select(AdeTokenKey)).one()
    assert b"PRIVATE KEY" not in key_row.key_sealed
    creds = credentials_of(row, cli_env)
    assert (creds.consumer_secret, creds.access_token, creds.access_secret) == (
        "CS_5b7d0a",
        "AT_9e8f7a",
        "AS_1c2d3e",
    )
    actions = set(session.scalars(select(AuditEvent.action)))
    assert {"ade.token_key_created", "ade.server_token_uploaded"} <= actions

    status = run_cli("ade", "status")
    assert status.exit_code == 0 and "expires:" in status.output


def test_token_for_another_certificate_is_refused_with_a_reason(
    cli_env: Any, session: Session, tmp_path: Path
) -> None:
    _certificate(tmp_path)
    from tests.support import pki

    other, _key = pki.make_ca("someone else's ABM certificate")
    other_pem = pki.write_pem(tmp_path / "other.pem", other)
    p7m = abm_token(other_pem, tmp_path / "token.p7m", token_fields(clock.now() + timedelta(days=30)))
    result = run_cli("ade", "upload-token", str(p7m))
    assert result.exit_code != 0
    assert "another certificate" in result.output
    session.rollback()  # end the read snapshot to see what the CLI wrote
    session.expire_all()
    assert session.scalars(select(AdeServerToken)).first() is None


def test_garbage_and_expired_tokens_are_refused(cli_env: Any, session: Session, tmp_path: Path) -> None:
    cert = _certificate(tmp_path)
    junk = tmp_path / "junk.p7m"
    junk.write_bytes(b"MIME-Version: 1.0\n\nnot base64 at all !!!\n")
    result = run_cli("ade", "upload-token", str(junk))
    assert result.exit_code != 0 and "token:" in result.output
    old = abm_token(cert, tmp_path / "old.p7m", token_fields(clock.now() - timedelta(days=1)))
    result = run_cli("ade", "upload-token", str(old))
    assert result.exit_code != 0 and "expired" in result.output
    session.rollback()  # end the read snapshot to see what the CLI wrote
    session.expire_all()
    assert session.scalars(select(AdeServerToken)).first() is None


def test_expiry_warning_like_the_push_certificate(cli_env: Any, tmp_path: Path) -> None:
    cert = _certificate(tmp_path)
    p7m = abm_token(cert, tmp_path / "soon.p7m", token_fields(clock.now() + timedelta(days=10)))
    result = run_cli("ade", "upload-token", str(p7m))
    assert result.exit_code == 0
    assert "WARNING" in result.output and "expires" in result.output
    row = AdeServerToken(access_token_expiry=clock.now() - timedelta(days=2))
    warning = expiry_warning(row)
    assert warning is not None and warning.level == "error" and "期限切れ" in warning.ja
    assert expiry_warning(AdeServerToken(access_token_expiry=clock.now() + timedelta(days=90))) is None


def test_renewed_token_of_the_same_server_keeps_the_cursor(
    cli_env: Any, session: Session, tmp_path: Path
) -> None:
    cert = _certificate(tmp_path)
    first = abm_token(cert, tmp_path / "a.p7m", token_fields(clock.now() + timedelta(days=20)))
    assert run_cli("ade", "upload-token", str(first)).exit_code == 0
    session.rollback()  # end the read snapshot to see what the CLI wrote
    session.expire_all()
    row = session.scalars(select(AdeServerToken)).one()
    row.cursor = "MTIzNDU2Nzg5MDEyMzQ1Ng"
    session.commit()
    second = abm_token(
        cert, tmp_path / "b.p7m", token_fields(clock.now() + timedelta(days=365)), cipher="-aes128"
    )
    assert run_cli("ade", "upload-token", str(second)).exit_code == 0
    session.rollback()  # end the read snapshot to see what the CLI wrote
    session.expire_all()
    rows = session.scalars(select(AdeServerToken).order_by(AdeServerToken.id)).all()
    assert [r.active for r in rows] == [False, True]
    assert rows[1].cursor == "MTIzNDU2Nzg5MDEyMzQ1Ng"


def test_doctor_reads_the_uploaded_token(cli_env: Any, session: Session, tmp_path: Path) -> None:
    from mdm.services import doctor

    assert doctor.check_abm_token(session).state == "not configured"
    cert = _certificate(tmp_path)
    p7m = abm_token(cert, tmp_path / "t.p7m", token_fields(clock.now() + timedelta(days=200)))
    assert run_cli("ade", "upload-token", str(p7m)).exit_code == 0
    session.rollback()  # end the read snapshot to see what the CLI wrote
    session.expire_all()
    finding = doctor.check_abm_token(session)
    assert finding.state == "ok" and "残り" in finding.ja
    row = session.scalars(select(AdeServerToken)).one()
    row.access_token_expiry = clock.now() + timedelta(days=5)
    session.commit()
    assert doctor.check_abm_token(session).state == "warn"
    row.access_token_expiry = clock.now() - timedelta(days=1)
    session.commit()
    assert doctor.check_abm_token(session).state == "fail"
