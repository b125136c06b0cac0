"""Who is speaking on the Apple device channel: the identity certificate behind a request.

The certificate comes from the Mdm-Signature header (a detached CMS signature over the body) or,
behind a TLS-terminating proxy, from the configured client-certificate header. Either way it must
chain to a trusted device CA and be valid now. Whether it may open /mdm/* (its recorded purpose,
revocation, a built-in-CA certificate this server never issued) and which UDID it is bound to is
the service's job (mdm.services.apple_channel), after the body has been authenticated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cryptography import x509
from flask import Request
from sqlalchemy.orm import Session

from mdm.ground.config import Settings
from mdm.ground.identity.client_cert import parse_proxy_certificate
from mdm.ground.identity.signature import (
    SignatureError,
    verify_mdm_signature,
    verify_mdm_signature_streamed,
)
from mdm.ground.identity.trust import issued_by_builtin_ca, verify_device_certificate
from mdm.services.apple_channel import PresentedIdentity


class Unauthenticated(PermissionError):
    """No valid device identity on the request."""


def request_identity(
    request: Request, body: bytes, session: Session, settings: Settings
) -> PresentedIdentity:
    return _identify(request, session, settings, lambda signature: verify_mdm_signature(signature, body))


def streamed_request_identity(
    request: Request, chunks: Iterable[bytes], session: Session, settings: Settings
) -> PresentedIdentity:
    """As `request_identity`, for a body read as a stream; `chunks` is read to its end."""

    def drain() -> None:
        for _chunk in chunks:
            pass  # the TLS peer sent it all; read it to learn what it answers

    return _identify(
        request,
        session,
        settings,
        lambda signature: verify_mdm_signature_streamed(signature, chunks),
        drain,
    )


def _identify(
    request: Request,
    session: Session,
    settings: Settings,
    verify_signature: Callable[[str], x509.Certificate],
    read_rest: Callable[[], None] = lambda: None,
) -> PresentedIdentity:
    signature = request.headers.get("Mdm-Signature")
    try:
        if signature:
            cert = verify_signature(signature)
        elif settings.client_cert_header and request.headers.get(settings.client_cert_header):
            cert = parse_proxy_certificate(request.headers[settings.client_cert_header])
            read_rest()
        else:
            raise Unauthenticated("no Mdm-Signature header and no client certificate")
        issuer = verify_device_certificate(session, settings, cert)
    except SignatureError as exc:
        raise Unauthenticated(str(exc)) from exc
    return PresentedIdentity(cert, issued_by_builtin_ca(session, settings, cert, issuer))
