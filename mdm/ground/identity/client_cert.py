"""Read the client certificate a TLS-terminating proxy forwards in a request header.

When a proxy in front of Hikeshi verifies the device's TLS client certificate, it passes the
certificate on in a header whose name is configured per deployment. Proxies disagree on the
encoding, so this accepts the three common ones:

- URL-encoded PEM (nginx `$ssl_client_escaped_cert`, AWS ALB, Traefik with delimiters),
- PEM whose newlines were turned into spaces (Apache `%{SSL_CLIENT_CERT}` via some setups, HAProxy),
- bare base64 DER (Traefik `pem: false` style, HAProxy `ssl_c_der,base64`).

The header is only as trustworthy as the proxy: the handler must strip it from requests that did not
come through the proxy. Whether the certificate is trusted is `signature.verify_chain`'s question.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote

from cryptography import x509

from mdm.ground.identity.signature import SignatureError
from mdm.ground.x509util import load_der_certificate

# One certificate in PEM or base64 is a few KiB; refuse anything far larger before decoding.
MAX_HEADER_CHARS = 32 * 1024

_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


class BadClientCertificate(SignatureError):
    """The forwarded header does not hold exactly one readable X.509 certificate (HTTP 401)."""


def parse_proxy_certificate(value: str) -> x509.Certificate:
    """The certificate in a proxy's client-certificate header, or BadClientCertificate."""
    if not isinstance(value, str):
        raise BadClientCertificate("client certificate header is not text")
    text = value.strip()
    if not text or text == "-":  # some proxies write "-" or nothing when the client sent no certificate
        raise BadClientCertificate("client certificate header is empty")
    if len(text) > MAX_HEADER_CHARS:
        raise BadClientCertificate("client certificate header is too large")
    if "%" in text:  # neither PEM nor base64 uses "%", so this is URL encoding
        try:
            text = unquote(text, errors="strict").strip()
        except UnicodeDecodeError as exc:
            raise BadClientCertificate("client certificate header has invalid URL encoding") from exc

    if "-----BEGIN" in text:
        blocks = _PEM_BLOCK.findall(text)
        if len(blocks) != 1 or text.count("-----BEGIN") != 1:
            # A chain would leave it ambiguous which certificate is the client's.
            raise BadClientCertificate("client certificate header must hold exactly one PEM certificate")
        encoded = blocks[0]
    else:
        encoded = text
    der = _base64_der(encoded)
    try:
        return load_der_certificate(der)
    except ValueError as exc:
        raise BadClientCertificate("client certificate header does not hold an X.509 certificate") from exc


def _base64_der(encoded: str) -> bytes:
    compact = "".join(encoded.split())  # newlines, or the spaces some proxies put in their place
    if not compact:
        raise BadClientCertificate("client certificate header holds no certificate data")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadClientCertificate("client certificate header is not PEM or base64 DER") from exc
