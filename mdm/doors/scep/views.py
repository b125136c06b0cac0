"""GET/POST /scep: GetCACaps, GetCACert and PKIOperation (RFC 8894 §4); GET /pki/device-ca.crl.

Thin: decode the request, authenticate and open it (mdm.doors.scep.message), call one service
(enrollment.issuance), encode the CertRep. A refused request gets a FAILURE CertRep (HTTP 200, as
the protocol wants); only bytes that are not a PKIMessage at all get an HTTP error.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import datetime

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Blueprint, Response, request
from sqlalchemy.orm import Session

from enrollment import issuance
from enrollment.tokens import ChallengeRejected
from mdm.doors.appctx import client_ip, db_session, settings
from mdm.doors.scep import certrep
from mdm.doors.scep.attributes import FailInfo, MessageType
from mdm.doors.scep.message import (
    MAX_MESSAGE_BYTES,
    MalformedMessage,
    PKIMessage,
    RequestRejected,
    challenge_password,
    parse_pki_message,
)
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.ca import CANotReady, Credential, device_ca, device_ca_certificate
from mdm.services import revocation

log = logging.getLogger(__name__)
bp = Blueprint("scep", __name__)

# RFC 8894 §3.5.2. SCEPStandard implies AES, POSTPKIOperation and SHA-256; they are listed anyway
# for clients that predate it. DES3 for older clients; Renewal: RenewalReq signed by the identity.
CAPABILITIES = ("POSTPKIOperation", "SHA-256", "AES", "DES3", "SCEPStandard", "Renewal")


def _plain(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")


@bp.route("/scep", methods=["GET", "POST"])
@bp.route("/scep/pkiclient.exe", methods=["GET", "POST"])
def scep() -> Response:
    operation = request.args.get("operation", "")
    if operation == "GetCACaps":
        return Response("\n".join(CAPABILITIES) + "\n", content_type="text/plain; charset=us-ascii")
    if operation == "GetCACert":
        try:
            ca_cert = device_ca_certificate(db_session())
        except CANotReady as exc:
            return _plain(503, str(exc))
        return Response(ca_cert.public_bytes(Encoding.DER), content_type="application/x-x509-ca-cert")
    if operation == "PKIOperation":
        try:
            der = _message_bytes()
        except ValueError as exc:
            return _plain(400, str(exc))
        return _pki_operation(der)
    return _plain(400, "operation must be GetCACaps, GetCACert or PKIOperation")


@bp.get("/pki/device-ca.crl")
def device_ca_crl() -> Response:
    """The device CA's revocation list (DER), for RADIUS servers that check EAP-TLS certificates."""
    try:
        der = revocation.device_ca_crl(db_session(), settings())
    except CANotReady as exc:
        return _plain(503, str(exc))
    response = Response(der, content_type="application/pkix-crl")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _message_bytes() -> bytes:
    if request.method == "POST":
        if request.content_length is not None and request.content_length > MAX_MESSAGE_BYTES:
            raise ValueError("message too large")
        body = request.stream.read(MAX_MESSAGE_BYTES + 1)
        if len(body) > MAX_MESSAGE_BYTES:
            raise ValueError("message too large")
        return body
    encoded = request.args.get("message", "")
    if not encoded:
        raise ValueError("message parameter is required for PKIOperation")
    # A '+' that was not percent-encoded arrives as a space.
    compact = "".join(encoded.replace(" ", "+").split())
    if len(compact) > MAX_MESSAGE_BYTES * 4 // 3 + 4:
        raise ValueError("message too large")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("message parameter is not base64") from exc


def _same_key(message: PKIMessage, csr_key: object) -> bool:
    def spki(key: object) -> bytes:
        return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]

    return spki(message.signer.public_key()) == spki(csr_key)


def _pki_operation(der: bytes) -> Response:
    conf = settings()
    session = db_session()
    try:
        message = parse_pki_message(der)
    except MalformedMessage as exc:
        return _plain(400, str(exc))
    except RequestRejected as exc:
        return _plain(400, exc.reason)
    try:
        ca = device_ca(session, conf)
    except CANotReady as exc:
        return _plain(503, str(exc))
    actor = Actor(f"scep:{message.transaction_id[:64]}", "device", client_ip())
    now = clock.now()
    try:
        if message.signature_error:
            raise RequestRejected(message.signature_fail_info, message.signature_error)
        if message.message_type == MessageType.PKCS_REQ:
            csr, cipher = message.open_csr(ca.certificate, ca.private_key)
            # The PKCSReq signer is the requester's own key (a self-signed certificate).
            if not _same_key(message, csr.public_key()):
                raise RequestRejected(FailInfo.BAD_REQUEST, "PKCSReq must be signed with the key of the CSR")
            challenge = challenge_password(csr)
            if not challenge:
                raise RequestRejected(FailInfo.BAD_REQUEST, "the CSR has no challenge password")
            issued = issuance.issue_with_challenge(session, conf, csr, challenge, actor=actor)
        elif message.message_type == MessageType.RENEWAL_REQ:
            csr, cipher = message.open_csr(ca.certificate, ca.private_key)
            issued = issuance.renew_with_identity(session, conf, csr, message.signer, actor=actor)
        else:
            raise RequestRejected(
                FailInfo.BAD_REQUEST, f"messageType {message.message_type} is not supported"
            )
        body = certrep.success(
            ca,
            transaction_id=message.transaction_id,
            recipient_nonce=message.sender_nonce,
            issued=issued.certificate,
            requester=message.signer,
            cipher=cipher,
            now=now,
        )
        session.commit()
        log.info("SCEP issued %s (transaction %s)", issued.row.fingerprint_sha256, message.transaction_id)
    except RequestRejected as exc:
        body = _refuse(session, ca, message, exc.fail_info, exc.reason, now)
    except (ChallengeRejected, issuance.BadCertificateRequest, issuance.RenewalRefused) as exc:
        body = _refuse(session, ca, message, FailInfo.BAD_REQUEST, str(exc), now)
    return Response(body, status=200, content_type=certrep.CONTENT_TYPE)


def _refuse(
    session: Session, ca: Credential, message: PKIMessage, fail_info: str, reason: str, now: datetime
) -> bytes:
    # Nothing of a refused request stays written (a token use may have been taken already).
    session.rollback()
    log.warning(
        "SCEP request refused from %s (transaction %s): %s", client_ip(), message.transaction_id, reason
    )
    return certrep.failure(
        ca,
        transaction_id=message.transaction_id,
        recipient_nonce=message.sender_nonce,
        fail_info=fail_info,
        now=now,
    )
