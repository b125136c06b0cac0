"""`hikeshi doctor`: is this server ready for real iPads? One finding per item of the README's
production checklist, each said in Japanese and English.

A finding claims only what was seen: a check that could not look (no reference clock answered)
says "unknown", never "ok"; something Hikeshi does not have yet (the Apple Business Manager
token) says "not configured". Only "fail" makes the command exit non-zero.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import migration_state
from mdm.ground.models import PushCertificate, User
from mdm.ground.push.certificates import EXPIRY_WARNING, active_push_certificate
from mdm.ground.transport import TransportError, check_public_url
from mdm.services.ade.server_token import active_server_token
from mdm.services.ade.server_token import expiry_warning as ade_expiry_warning
from mdm.services.backup.schedule import backup_status
from mdm.services.vpp.token import active_token as vpp_active_token
from mdm.services.vpp.token import expiry_warning as vpp_expiry_warning

State = Literal["ok", "warn", "fail", "unknown", "not configured"]
# The Android agent refuses a signed request dated more than 30 s ahead; TLS and SCEP tolerate
# less than they seem to once certificates are minutes old.
CLOCK_FAIL = timedelta(seconds=30)
CLOCK_WARN = timedelta(seconds=5)
TLS_WARNING = timedelta(days=21)


@dataclass(frozen=True)
class Finding:
    key: str
    label_ja: str
    label_en: str
    state: State
    ja: str
    en: str


@dataclass
class HttpsProbe:
    """What the HTTPS check saw, for the clock check (the server's Date header)."""

    server_date: datetime | None = None
    seen_at: datetime | None = None


def _finding(key: str, labels: tuple[str, str], state: State, ja: str, en: str) -> Finding:
    return Finding(key, labels[0], labels[1], state, ja, en)


PUSH = ("プッシュ証明書", "Push certificate")
HTTPS = ("HTTPS", "HTTPS")
PUBLIC_URL = ("公開 URL", "Public URL")
ABM = ("Apple Business Manager トークン", "Apple Business Manager token")
CLOCK = ("時刻", "Clock")
DATABASE = ("データベース", "Database")
BACKUPS = ("バックアップ", "Backups")
ADMIN = ("管理者", "Administrator")
VPP = ("App とブックのコンテンツトークン", "Apps and Books content token")


def check_push_certificate(session: Session) -> Finding:
    row: PushCertificate | None = active_push_certificate(session)
    if row is None:
        return _finding(
            "push_certificate",
            PUSH,
            "fail",
            "未登録です。`hikeshi push-cert request` で申請してください。",
            "none installed: request one with `hikeshi push-cert request`.",
        )
    left = row.not_after - clock.now()
    when = f"{row.not_after:%Y-%m-%d}"
    if left <= timedelta(0):
        return _finding(
            "push_certificate",
            PUSH,
            "fail",
            f"{row.topic} は {when} に期限切れです。同じ Apple ID で更新してください。",
            f"{row.topic} expired on {when}: renew it with the same Apple ID.",
        )
    if row.last_error:
        return _finding(
            "push_certificate",
            PUSH,
            "fail",
            f"APNs が拒否しています: {row.last_error}",
            f"APNs refuses it: {row.last_error}",
        )
    if left <= EXPIRY_WARNING:
        return _finding(
            "push_certificate",
            PUSH,
            "warn",
            f"{row.topic} は {when} に期限切れになります（残り {left.days} 日）。"
            "同じ Apple ID で更新してください。",
            f"{row.topic} expires on {when} ({left.days} days): renew it with the same Apple ID.",
        )
    return _finding(
        "push_certificate",
        PUSH,
        "ok",
        f"{row.topic}、期限 {when}（残り {left.days} 日）",
        f"{row.topic}, expires {when} ({left.days} days)",
    )


def check_public_url_setting(settings: Settings) -> Finding:
    url = settings.public_url
    try:
        warnings = check_public_url(settings)
    except TransportError as exc:
        return _finding("public_url", PUBLIC_URL, "fail", f"{url} は使えません: {exc}", str(exc))
    if warnings:
        return _finding(
            "public_url",
            PUBLIC_URL,
            "fail",
            f"{url} は https ではありません。端末は https の URL にしか登録できません"
            "（HIKESHI_PUBLIC_URL を設定してください）。",
            f"{url} is not https: devices enroll only over https (set HIKESHI_PUBLIC_URL).",
        )
    return _finding("public_url", PUBLIC_URL, "ok", url, url)


def _tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.server_anchor_file:
        context.load_verify_locations(cafile=settings.server_anchor_file)
    return context


def check_https(
    settings: Settings, probe: HttpsProbe, *, timeout: float = 10.0, now: Callable[[], datetime] = clock.now
) -> Finding:
    """GET <public URL>/healthz over verified TLS, as an iPad would reach it."""
    parts = urlsplit(settings.public_url)
    if parts.scheme != "https" or not parts.hostname:
        return _finding(
            "https",
            HTTPS,
            "fail",
            "公開 URL が https ではありません。",
            "the public URL is not https.",
        )
    try:
        context = _tls_context(settings)
    except (OSError, ssl.SSLError) as exc:
        return _finding(
            "https",
            HTTPS,
            "fail",
            f"HIKESHI_SERVER_ANCHOR_FILE を読めません: {exc}",
            f"HIKESHI_SERVER_ANCHOR_FILE cannot be read: {exc}",
        )
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
    path = (parts.path.rstrip("/") or "") + "/healthz"
    try:
        conn.request("GET", path, headers={"User-Agent": "hikeshi-doctor"})
        response = conn.getresponse()
        response.read()
        sock = conn.sock
        peer = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
    except ssl.SSLCertVerificationError as exc:
        hint_ja = (
            "私設 CA の証明書なら HIKESHI_SERVER_ANCHOR_FILE にその CA を設定してください。"
            if not settings.server_anchor_file
            else ""
        )
        hint_en = (
            " For a private CA, name it in HIKESHI_SERVER_ANCHOR_FILE."
            if not settings.server_anchor_file
            else ""
        )
        return _finding(
            "https",
            HTTPS,
            "fail",
            f"{settings.public_url} の証明書を検証できません ({exc.verify_message})。{hint_ja}",
            f"the certificate of {settings.public_url} does not verify ({exc.verify_message}).{hint_en}",
        )
    except (OSError, http.client.HTTPException) as exc:
        return _finding(
            "https",
            HTTPS,
            "fail",
            f"{settings.public_url} に接続できません: {exc}",
            f"cannot reach {settings.public_url}: {exc}",
        )
    finally:
        conn.close()
    date = response.getheader("Date")
    if date:
        try:
            probe.server_date = parsedate_to_datetime(date)
            probe.seen_at = now()
        except (TypeError, ValueError):
            probe.server_date = None
    if response.status != 200:
        return _finding(
            "https",
            HTTPS,
            "fail",
            f"{settings.public_url}/healthz が HTTP {response.status} を返しました"
            "（Hikeshi に届いていません）。",
            f"{settings.public_url}/healthz answered HTTP {response.status} (not reaching Hikeshi).",
        )
    expires = (
        datetime.fromtimestamp(ssl.cert_time_to_seconds(str(peer["notAfter"])), tz=clock.now().tzinfo)
        if peer and "notAfter" in peer
        else None
    )
    private = " (HIKESHI_SERVER_ANCHOR_FILE)" if settings.server_anchor_file else ""
    if expires is not None and expires - now() <= TLS_WARNING:
        return _finding(
            "https",
            HTTPS,
            "warn",
            f"証明書は {expires:%Y-%m-%d} に期限切れになります。更新してください。",
            f"the server certificate expires on {expires:%Y-%m-%d}: renew it.",
        )
    until = f"{expires:%Y-%m-%d}" if expires else "?"
    return _finding(
        "https",
        HTTPS,
        "ok",
        f"証明書を検証できました{private}、期限 {until}",
        f"certificate verified{private}, expires {until}",
    )


def check_clock(engine: Engine, probe: HttpsProbe, *, now: Callable[[], datetime] = clock.now) -> Finding:
    """This machine's clock against the database server's (PostgreSQL) and the public URL's."""
    skews: dict[str, timedelta] = {}
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            before = now()
            server = conn.execute(text("SELECT now()")).scalar_one()
            after = now()
        skews["database"] = server - (before + (after - before) / 2)
    if probe.server_date is not None and probe.seen_at is not None:
        # The Date header has whole seconds: up to one second of skew is the header's own.
        skew = probe.server_date - probe.seen_at
        skews["public URL"] = timedelta(0) if abs(skew) <= timedelta(seconds=1) else skew
    if not skews:
        return _finding(
            "clock",
            CLOCK,
            "unknown",
            "比較できる時計がありません（SQLite で、公開 URL にも届きません）。NTP で同期してください。",
            "nothing to compare with (SQLite, public URL unreachable): keep it synchronised by NTP.",
        )
    worst_name, worst = max(skews.items(), key=lambda item: abs(item[1]))
    seconds = f"{worst.total_seconds():+.1f}"
    versus = "データベース" if worst_name == "database" else "公開 URL"
    if abs(worst) > CLOCK_FAIL:
        state: State = "fail"
    elif abs(worst) > CLOCK_WARN:
        state = "warn"
    else:
        state = "ok"
    return _finding(
        "clock",
        CLOCK,
        state,
        f"{versus}のサーバーとの差 {seconds} 秒",
        f"{seconds} s against the {worst_name} server",
    )


def check_database(engine: Engine) -> Finding:
    try:
        current, heads = migration_state(engine)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error: the finding says what it was
        first = (str(exc).strip().splitlines() or ["?"])[0][:200]
        return _finding("database", DATABASE, "fail", f"接続できません: {first}", f"cannot connect: {first}")
    name = engine.dialect.name
    if current != heads:
        return _finding(
            "database",
            DATABASE,
            "fail",
            f"{name}: マイグレーションが未適用です。`hikeshi db upgrade` を実行してください。",
            f"{name}: migrations pending: run `hikeshi db upgrade`.",
        )
    if name == "sqlite":
        return _finding(
            "database",
            DATABASE,
            "warn",
            "SQLite（組み込み）です。本番では PostgreSQL を使ってください。",
            "SQLite (embedded): use PostgreSQL in production.",
        )
    return _finding("database", DATABASE, "ok", f"{name}、最新", f"{name}, up to date")


def check_backups(session: Session, settings: Settings) -> Finding:
    status = backup_status(session, settings)
    if not status["enabled"]:
        return _finding(
            "backups",
            BACKUPS,
            "fail",
            "定期バックアップが無効です"
            "（HIKESHI_BACKUP_DIR と HIKESHI_BACKUP_KEY_FILE を設定してください）。",
            "scheduled backups are off (set HIKESHI_BACKUP_DIR and HIKESHI_BACKUP_KEY_FILE).",
        )
    last = status.get("last_success_at") or "なし / none"
    if not status["ok"]:
        error = status.get("error") or ""
        return _finding(
            "backups",
            BACKUPS,
            "fail",
            f"最後の成功: {last}。{'失敗中: ' + error if error else '遅れています。'}",
            f"last success: {last}; {'failing: ' + error if error else 'overdue.'}",
        )
    return _finding("backups", BACKUPS, "ok", f"最後の成功: {last}", f"last success: {last}")


def check_abm_token(session: Session | None = None) -> Finding:
    """The Apple Business Manager server token: not configured until one is uploaded, then
    checked for expiry like the push certificate (the warning is the token's own words)."""
    row = active_server_token(session) if session is not None else None
    if row is None:
        return _finding(
            "abm_token",
            ABM,
            "not configured" if session is not None else "unknown",
            "未設定です（自動デバイス登録はまだ使えません）。"
            if session is not None
            else "データベースに届かないため不明です。",
            "not configured (Automated Device Enrollment is not set up yet)."
            if session is not None
            else "unknown: no database.",
        )
    warning = ade_expiry_warning(row)
    if warning is not None:
        return _finding(
            "abm_token", ABM, "fail" if warning.level == "error" else "warn", warning.ja, warning.en
        )
    when = f"{row.access_token_expiry:%Y-%m-%d}"
    left = (row.access_token_expiry - clock.now()).days
    sync = "" if row.last_error is None else f" (last sync failed: {row.last_error})"
    sync_ja = "" if row.last_error is None else f"（前回の同期は失敗: {row.last_error}）"
    return _finding(
        "abm_token",
        ABM,
        "ok" if row.last_error is None else "warn",
        f"期限 {when}（残り {left} 日）{sync_ja}",
        f"expires {when} ({left} days){sync}",
    )


def check_vpp_token(session: Session | None = None) -> Finding:
    """The Apps and Books content token: not configured until one is uploaded, then checked for
    expiry (and a changed location) like the ABM token; the last sync's error makes it a warning."""
    row = vpp_active_token(session) if session is not None else None
    if row is None:
        return _finding(
            "vpp_token",
            VPP,
            "not configured" if session is not None else "unknown",
            "未設定です（App Store アプリのライセンスを割り当てられません）。"
            if session is not None
            else "データベースに届かないため不明です。",
            "not configured (App Store app licenses cannot be assigned)."
            if session is not None
            else "unknown: no database.",
        )
    warning = vpp_expiry_warning(row)
    if warning is not None:
        return _finding(
            "vpp_token", VPP, "fail" if warning.level == "error" else "warn", warning.ja, warning.en
        )
    when = f"{row.expires_at:%Y-%m-%d}"
    left = (row.expires_at - clock.now()).days
    place = row.location_name or "?"
    if row.last_error is not None:
        return _finding(
            "vpp_token",
            VPP,
            "warn",
            f"場所 {place}、期限 {when}（前回の同期は失敗: {row.last_error}）",
            f"location {place}, expires {when} (last sync failed: {row.last_error})",
        )
    return _finding(
        "vpp_token",
        VPP,
        "ok",
        f"場所 {place}、期限 {when}（残り {left} 日）",
        f"location {place}, expires {when} ({left} days)",
    )


def check_administrator(session: Session) -> Finding:
    admins = session.scalar(
        select(func.count()).select_from(User).where(User.role == "admin", User.disabled_at.is_(None))
    )
    if not admins:
        return _finding(
            "administrator",
            ADMIN,
            "fail",
            "有効な管理者がいません。`hikeshi user bootstrap` で最初の管理者を作成してください。",
            "no enabled administrator: create the first one with `hikeshi user bootstrap`.",
        )
    return _finding("administrator", ADMIN, "ok", f"{admins} 人", f"{admins}")


def examine(
    settings: Settings, engine: Engine, session_factory: Callable[[], Session], *, timeout: float = 10.0
) -> list[Finding]:
    """Every check, in the order of the README's checklist."""
    probe = HttpsProbe()
    findings = [check_public_url_setting(settings), check_https(settings, probe, timeout=timeout)]
    database = check_database(engine)
    findings.append(database)
    if database.state == "fail":
        findings.append(check_clock_without_database(probe))
        for key, labels in (("push_certificate", PUSH), ("backups", BACKUPS), ("administrator", ADMIN)):
            findings.append(
                _finding(
                    key, labels, "unknown", "データベースに届かないため不明です。", "unknown: no database."
                )
            )
        findings.append(check_abm_token(None))
        findings.append(check_vpp_token(None))
        return findings
    with session_factory() as session:
        findings.insert(0, check_push_certificate(session))
        findings.append(check_clock(engine, probe))
        findings.append(check_backups(session, settings))
        findings.append(check_administrator(session))
        findings.append(check_abm_token(session))
        findings.append(check_vpp_token(session))
    return findings


def check_clock_without_database(probe: HttpsProbe) -> Finding:
    if probe.server_date is None or probe.seen_at is None:
        return _finding("clock", CLOCK, "unknown", "比較できる時計がありません。", "nothing to compare with.")
    skew = probe.server_date - probe.seen_at
    state: State = "fail" if abs(skew) > CLOCK_FAIL else "ok"
    return _finding(
        "clock",
        CLOCK,
        state,
        f"公開 URL との差 {skew.total_seconds():+.0f} 秒",
        f"{skew.total_seconds():+.0f} s",
    )


def failed(findings: list[Finding]) -> bool:
    return any(f.state == "fail" for f in findings)
