"""消去完了証明書 (wipe certificate): a signed record that a device confirmed its erasure.

The content is JSON fixed when the device acknowledges EraseDevice. It is signed with the
server signing certificate as a detached CMS SignedData (DER), so `openssl cms -verify -binary
-inform DER -content FILE` and `hikeshi certificate verify FILE SIGFILE` both check it, and one
changed byte makes both fail.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from commands.kinds.android import wipe_flags
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.ca import profile_signer
from mdm.ground.config import Settings
from mdm.ground.models import AmapiCommandSend, AmapiSendKind, Command
from mdm.ground.models.incident import Incident, LossKind, WipeCertificate
from mdm.ground.x509util import fingerprint, issued_by, load_der_certificate

CERTIFICATE_TYPE = "hikeshi.wipe-certificate"
# The printed page speaks the reader's time; the signed JSON keeps exact UTC.
JST = timezone(timedelta(hours=9), "JST")
VERSION = 1


class CertificateInvalid(ValueError):
    """The signature does not prove the content (tampered, wrong signer, malformed)."""


# -- content ----------------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


APPLE_ERASE = "EraseDevice (Apple MDM; crypto-erase of the device's storage)"


def erase_method(platform: str, params: dict[str, Any]) -> str:
    """How the device erased itself, in its own platform's terms: Apple's EraseDevice, or the Android
    agent's WIPE, which calls DevicePolicyManager.wipeData (a factory reset) once its acknowledgement
    has reached the server (docs/android-agent-protocol.md)."""
    if platform != "android":
        return APPLE_ERASE
    flags = wipe_flags(params)
    with_flags = f" with {' | '.join(flags)}" if flags else ""
    return (
        f"WIPE (Android agent as device owner; DevicePolicyManager.wipeData{with_flags}: factory reset "
        "of the device, started after the acknowledgement reached the server)"
    )


AMAPI_ISSUED = "android_management_api"


def _amapi_delete(erase: Command) -> AmapiCommandSend | None:
    """The devices.delete that carried this wipe, when it went through the Android Management API."""
    session = object_session(erase)
    send = session.get(AmapiCommandSend, erase.id) if session is not None and erase.id is not None else None
    return send if send is not None and send.kind == AmapiSendKind.DELETE else None


def _amapi_wipe(erase: Command, send: AmapiCommandSend, wipe: dict[str, Any]) -> dict[str, Any]:
    """What an AMAPI wipe proves, and no more: Google accepted devices.delete (the wipe was issued);
    the tablet's own confirmation is not something the API reports, so it is not claimed."""
    from_result = _last_answer(erase)
    flags = from_result.get("WipeDataFlags") if isinstance(from_result.get("WipeDataFlags"), list) else []
    with_flags = f" with wipeDataFlags {' | '.join(flags)}" if flags else ""
    return {
        **wipe,
        "method": (
            f"devices.delete (Android Management API{with_flags}): Google accepted the deletion, which "
            "issues the wipe; Android Device Policy factory-resets the tablet when the instruction "
            "reaches it. The API does not report the tablet's own confirmation."
        ),
        "issued_through": AMAPI_ISSUED,
        "amapi_device": send.device_name,
        "wipe_data_flags": flags,
        "issued_at": _time(send.issued_at),
        # Nobody but the tablet could say it erased itself, and AMAPI does not pass that on.
        "delivered_at": None,
        "acknowledged_at": None,
        "device_confirmed": None,
    }


def _last_answer(erase: Command) -> dict[str, Any]:
    results = list(erase.results)
    if not results:
        return {}
    try:
        value = json.loads(results[-1].raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def certificate_content(incident: Incident, erase: Command, unit_path: str | None) -> dict[str, Any]:
    content = _certificate_content(incident, erase, unit_path)
    send = _amapi_delete(erase)
    if send is not None:
        content["wipe"] = _amapi_wipe(erase, send, content["wipe"])
    return content


def _certificate_content(incident: Incident, erase: Command, unit_path: str | None) -> dict[str, Any]:
    device = incident.device
    return {
        "type": CERTIFICATE_TYPE,
        "version": VERSION,
        "title_ja": "消去完了証明書",
        "title_en": "Certificate of device erasure",
        "device": {
            "serial_number": device.serial_number,
            "asset_tag": device.asset_tag,
            "udid": device.udid,
            "model": device.model,
            "model_name": device.model_name,
            "product_name": device.product_name,
            "device_name": device.device_name,
            "platform": device.platform,
        },
        "org_unit": {"id": incident.org_unit_id, "path": unit_path},
        "incident": {
            "id": incident.id,
            "kind": incident.kind,
            "opened_at": _time(incident.opened_at),
            "operator": incident.operator,
        },
        "wipe": {
            "method": erase_method(device.platform, erase.params or {}),
            "command_uuid": erase.uuid,
            "requested_by": incident.wipe_requested_by,
            "requested_at": _time(incident.wipe_requested_at),
            "approved_by": None if incident.break_glass else incident.wipe_approved_by,
            "approved_at": _time(incident.wipe_approved_at),
            "break_glass": incident.break_glass,
            "break_glass_by": incident.wipe_approved_by if incident.break_glass else None,
            "break_glass_reason": incident.break_glass_reason,
            "queued_at": _time(erase.queued_at),
            "pushed_at": _time(erase.pushed_at),
            "delivered_at": _time(erase.sent_at),
            "acknowledged_at": _time(erase.acknowledged_at),
        },
    }


def encode_content(content: dict[str, Any]) -> bytes:
    # Sorted and indented: stable bytes that a person can also read.
    return (json.dumps(content, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


def record_wipe_certificate(
    session: Session, incident: Incident, erase: Command, unit_path: str | None
) -> WipeCertificate:
    """Fix the certificate's content at the acknowledgement (signed later by `issue_...`)."""
    existing = certificate_for_incident(session, incident)
    if existing is not None:
        return existing
    row = WipeCertificate(
        incident_id=incident.id,
        device_id=incident.device_id,
        content=encode_content(certificate_content(incident, erase, unit_path)),
        issued_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row


def certificate_for_incident(session: Session, incident: Incident) -> WipeCertificate | None:
    return session.scalars(select(WipeCertificate).where(WipeCertificate.incident_id == incident.id)).first()


# -- signing ----------------------------------------------------------------------------------------


def sign_detached(
    content: bytes,
    certificate: x509.Certificate,
    key: PrivateKeyTypes,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """DER CMS SignedData over `content` exactly as given, content not included (detached)."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(certificate, key, hashes.SHA256())  # type: ignore[arg-type]
    for cert in chain:
        builder = builder.add_certificate(cert)
    # Binary: sign the bytes as they are (no CRLF canonicalisation of the JSON).
    return builder.sign(Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])


def issue_wipe_certificate(
    session: Session, settings: Settings, certificate: WipeCertificate, *, actor: Actor
) -> WipeCertificate:
    """Sign the certificate with the server signing certificate, once; returns it signed."""
    if certificate.signature is not None:
        return certificate
    signer = profile_signer(session, settings)
    certificate.signature = sign_detached(certificate.content, signer.certificate, signer.private_key)
    certificate.signer_fingerprint = fingerprint(signer.certificate)
    certificate.signed_at = clock.now()
    record_event(
        session,
        actor,
        "wipe_certificate.signed",
        "incident",
        certificate.incident_id,
        {
            "device_id": certificate.device_id,
            "sha256": hashlib.sha256(certificate.content).hexdigest(),
            "signer": certificate.signer_fingerprint,
        },
    )
    session.flush()
    return certificate


def sign_pending_certificates(session: Session, settings: Settings, *, actor: Actor) -> int:
    """For the scheduler: sign every certificate fixed since the last run; returns how many."""
    pending = session.scalars(select(WipeCertificate).where(WipeCertificate.signature.is_(None))).all()
    for row in pending:
        issue_wipe_certificate(session, settings, row, actor=actor)
    return len(pending)


# -- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    signer: x509.Certificate
    signed_at: datetime | None


def _attribute(signed_attrs: Any, name: str) -> Any:
    for attr in signed_attrs:
        if attr["type"].native == name:
            return attr["values"][0]
    return None


def verify_detached(content: bytes, signature: bytes, trusted: Sequence[x509.Certificate]) -> Verified:
    """Check a detached CMS signature over `content`, made by a certificate one of `trusted` issued.

    Raises CertificateInvalid naming what failed.
    """
    try:
        info = cms.ContentInfo.load(signature)
        if info["content_type"].native != "signed_data":
            raise CertificateInvalid("not a CMS SignedData")
        signed = info["content"]
        if signed["encap_content_info"]["content"].native is not None:
            raise CertificateInvalid("the signature is not detached")
        [signer_info] = list(signed["signer_infos"])
        certs = [
            load_der_certificate(c.chosen.dump()) for c in signed["certificates"] if c.name == "certificate"
        ]
        sid = signer_info["sid"].chosen
        if signer_info["sid"].name != "issuer_and_serial_number":
            raise CertificateInvalid("signer identified by key id; expected issuer and serial")
        serial = sid["serial_number"].native
        signer = next((c for c in certs if c.serial_number == serial), None)
        if signer is None:
            raise CertificateInvalid("the signer's certificate is not in the signature")
        attrs = signer_info["signed_attrs"]
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}.get(
            digest_name
        )
        if algorithm is None:
            raise CertificateInvalid(f"unsupported digest {digest_name}")
        expected = _attribute(attrs, "message_digest")
        if expected is None or _attribute(attrs, "content_type").native != "data":
            raise CertificateInvalid("signed attributes lack the message digest or content type")
        h = hashes.Hash(algorithm)
        h.update(content)
        if h.finalize() != expected.native:
            raise CertificateInvalid("the content does not match the signature (altered)")
        # The signature covers the signed attributes re-encoded as a SET (tag 0x31), RFC 5652 5.4.
        signed_bytes = b"\x31" + attrs.dump()[1:]
        public_key = signer.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signer_info["signature"].native, signed_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signer_info["signature"].native, signed_bytes, ec.ECDSA(algorithm))
        else:
            raise CertificateInvalid("unsupported signer key type")
    except InvalidSignature as exc:
        raise CertificateInvalid("the signature is not valid") from exc
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, CertificateInvalid):
            raise
        raise CertificateInvalid(f"malformed signature: {exc}") from exc
    signing_time = _attribute(attrs, "signing_time")
    signed_at = signing_time.native if signing_time is not None else None
    if not any(issued_by(signer, ca) for ca in trusted):
        raise CertificateInvalid("the signer was not issued by a trusted CA")
    when = signed_at or clock.now()
    if not signer.not_valid_before_utc <= when <= signer.not_valid_after_utc:
        raise CertificateInvalid("the signer's certificate was not valid when it signed")
    return Verified(signer, signed_at)


# -- printable page ---------------------------------------------------------------------------------


def _row(label_ja: str, label_en: str, value: Any) -> str:
    shown = "—" if value in (None, "") else str(value)
    return (
        f"<tr><th>{html.escape(label_ja)}<br><small>{html.escape(label_en)}</small></th>"
        f"<td>{html.escape(shown)}</td></tr>"
    )


def _jst(value: str | None) -> str | None:
    """An ISO timestamp of the content as Japan time to the second ("2026-11-23 13:00:05 JST")."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # not ours to reinterpret: show it as signed
    if moment.tzinfo is None:
        return value
    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")


def render_certificate_html(content: bytes, *, signer_fingerprint: str | None = None) -> str:
    """A printable page (Japanese first, English below each label) of the certificate content."""
    data = json.loads(content)
    device, wipe, incident, unit = data["device"], data["wipe"], data["incident"], data["org_unit"]
    kind = LossKind.LABELS.get(incident.get("kind"), (incident.get("kind"), incident.get("kind")))
    if wipe["break_glass"]:
        approval = _row("承認者", "Approver", "なし(緊急単独実行)/ none (break glass)") + _row(
            "緊急実行者・理由",
            "Break glass by, reason",
            f"{wipe['break_glass_by']}: {wipe['break_glass_reason']}",
        )
    else:
        approval = _row("承認者", "Approver", wipe["approved_by"])
    rows = "".join(
        [
            _row("資産管理番号", "Asset tag", device.get("asset_tag")),
            _row("端末シリアル番号", "Serial number", device["serial_number"]),
            _row("UDID", "UDID", device["udid"]),
            _row(
                "機種",
                "Model",
                " ".join(filter(None, [device["model_name"], device["product_name"], device["model"]])),
            ),
            _row("端末名", "Device name", device["device_name"]),
            _row("所属", "Unit", unit["path"]),
            _row("インシデント番号", "Incident", f"#{incident['id']} ({kind[0]} / {kind[1]})"),
            _row("受付日時", "Reported at", _jst(incident.get("opened_at"))),
            _row("受付者", "Hotline operator", incident["operator"]),
            _row("消去申請者", "Requested by", wipe["requested_by"]),
            approval,
            _row("申請日時", "Requested at", _jst(wipe["requested_at"])),
            _row("承認日時", "Approved at", _jst(wipe["approved_at"])),
            _row("プッシュ送信日時", "Pushed at", _jst(wipe["pushed_at"])),
            _row("端末への配信日時", "Delivered at", _jst(wipe["delivered_at"])),
            _row("端末の消去応答日時", "Acknowledged at", _jst(wipe["acknowledged_at"])),
            _row("消去方式", "Method", wipe["method"]),
            _row("コマンドUUID", "Command UUID", wipe["command_uuid"]),
            _row("署名証明書 (SHA-256)", "Signer (SHA-256)", signer_fingerprint),
        ]
    )
    flag = ' class="break-glass"' if wipe["break_glass"] else ""
    # The command as the device knew it: Apple's EraseDevice, the Android agent's WIPE.
    command = html.escape(str(wipe["method"]).split(" ", 1)[0])
    statement = f"""
<p>下記の端末は、管理サーバーからの消去命令({command})を受信し、消去を完了した旨を応答しました。
本書はサーバー署名証明書による電子署名(CMS 分離署名)付きの JSON と同一の内容です。</p>
<p><small>The device below acknowledged the server's {command} command. This page shows the same content
as the signed JSON (detached CMS signature by the server signing certificate).</small></p>"""
    if wipe.get("issued_through") == AMAPI_ISSUED:
        rows = rows.replace(
            _row("端末への配信日時", "Delivered at", _jst(wipe["delivered_at"])),
            _row(
                "Google の消去受付日時",
                "Accepted by the Android Management API at",
                _jst(wipe.get("issued_at")),
            ),
        ).replace(
            _row("端末の消去応答日時", "Acknowledged at", _jst(wipe["acknowledged_at"])),
            _row(
                "端末からの消去完了の確認",
                "Confirmed by the tablet",
                "不明(API は報告しない)/ unknown (not reported by the API)",
            ),
        )
        statement = """
<p>下記の端末について、Android Management API(Google)が端末の削除(devices.delete)を受け付け、
消去命令が発行されました。端末自身からの消去完了の確認は API から報告されないため、本書は確認していません。
本書はサーバー署名証明書による電子署名(CMS 分離署名)付きの JSON と同一の内容です。</p>
<p><small>The Android Management API (Google) accepted the deletion of the device below (devices.delete): the
wipe was issued. The API does not report the tablet's own confirmation, so this certificate does not claim
it. This page shows the same content as the signed JSON (detached CMS signature by the server signing
certificate).</small></p>"""
    return f"""<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>消去完了証明書 / Certificate of device erasure — #{incident["id"]}</title>
<style>
body {{ font-family: "Hiragino Sans", "Noto Sans JP", sans-serif; margin: 2em; }}
h1 {{ font-size: 1.6em; margin-bottom: 0; }}
table {{ border-collapse: collapse; width: 100%; margin-top: 1em; }}
th, td {{ border: 1px solid #444; padding: .4em .6em; text-align: left; vertical-align: top; }}
th {{ width: 30%; background: #f2f2f2; }}
.break-glass th, .break-glass td {{ color: #b00; }}
@media print {{ body {{ margin: 0; }} }}
</style>
</head>
<body>
<main>
<h1>消去完了証明書</h1>
<p>Certificate of device erasure</p>
{statement}
<table{flag}>
{rows}
</table>
</main>
</body>
</html>
"""
