"""OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), as the device assignment service's
`/session` wants it: realm "ADM", the server token's consumer key and access token, signed with
the consumer secret and access secret. Only the header is built here; it is small enough that a
library would add more surface than it saves."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from mdm.ground import clock

REALM = "ADM"


def percent(value: str) -> str:
    """RFC 5849 section 3.6: everything but unreserved characters, UTF-8 encoded."""
    return quote(value.encode("utf-8"), safe="-._~")


def base_string_uri(url: str) -> str:
    """Scheme and host lowercase, default ports dropped, no query or fragment (section 3.4.1.2)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is not None and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


def signature_base(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Section 3.4.1: the method, the base URI and the sorted, encoded parameters (the query's
    and the oauth_* ones; realm and oauth_signature excluded)."""
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    pairs = sorted((percent(k), percent(v)) for k, v in [*query, *params])
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join((method.upper(), percent(base_string_uri(url)), percent(normalized)))


def hmac_sha1(base: str, consumer_secret: str, token_secret: str) -> str:
    key = f"{percent(consumer_secret)}&{percent(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()


def authorization_header(
    method: str,
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    oauth = [
        ("oauth_consumer_key", consumer_key),
        ("oauth_token", token),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", str(timestamp if timestamp is not None else int(clock.now().timestamp()))),
        ("oauth_nonce", nonce or secrets.token_hex(16)),
        ("oauth_version", "1.0"),
    ]
    signature = hmac_sha1(signature_base(method, url, oauth), consumer_secret, token_secret)
    fields = [("realm", REALM), *oauth, ("oauth_signature", signature)]
    return "OAuth " + ", ".join(f'{k}="{percent(v)}"' for k, v in fields)
