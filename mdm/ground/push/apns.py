"""APNs transport: wake Apple devices with an MDM push over HTTP/2, authenticated by the push certificate.

An MDM push carries no command: it only tells the device to check in (`{"mdm": PushMagic}`), so a
lost push costs latency, never a command (DESIGN.md invariant 1). This module only speaks to
APNs; which devices to wake and what to record about the outcome is the dispatcher's business.

One `ApnsClient` holds a small pool of HTTP/2 connections (per push certificate, so per topic) and
multiplexes every push on them, as Apple asks: opening a TLS connection per push gets a provider
throttled. A second connection opens only when every open one carries as many streams as APNs
allows (mdm.ground.push.h2pool), so light traffic keeps one. The client is bound to the event
loop it is first used in (its connections and asyncio primitives are), so keep one client per
credentials inside a long-lived loop and `aclose()` it when done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from mdm.ground import clock
from mdm.ground.push.backoff import backoff_delay, parse_retry_after
from mdm.ground.push.h2pool import H2Pool, H2Response

logger = logging.getLogger(__name__)

# MDM push certificates work against the production gateway only; there is no sandbox for MDM.
APNS_PRODUCTION_URL = "https://api.push.apple.com"

# Apple recommends keeping the connection open across pushes; an idle connection is still dropped
# locally after this long so that a path silently cut by a firewall or NAT is not reused forever.
IDLE_CONNECTION_SECONDS = 600.0

_REASON_MAX = 255  # fits PushAttempt.reason
_TOKEN = re.compile(r"\A(?:[0-9a-fA-F]{2}){8,200}\Z")


class PushCredentialsError(ValueError):
    """The push certificate or its key cannot be used for TLS client authentication."""


@dataclass(frozen=True)
class PushCredentials:
    """The APNs push certificate: topic (its UID), certificate PEM (may include a chain) and key."""

    topic: str  # the push certificate's UID, e.g. com.apple.mgmt.External.<uuid>
    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # unencrypted PEM private key; never printed in logs


@dataclass(frozen=True)
class PushOutcome:
    """What became of one push after all its attempts."""

    token: str  # hex device token, as given
    status: int | None  # HTTP status of the last attempt; None when there was no answer
    reason: str | None  # APNs "reason" (BadDeviceToken, Unregistered, ...) or the connection error
    apns_id: str | None
    attempts: int

    @property
    def delivered(self) -> bool:
        return self.status == 200

    @property
    def stale_token(self) -> bool:
        """APNs says the token is no longer active for the topic (410 Unregistered)."""
        return self.status == 410

    @property
    def bad_token(self) -> bool:
        return self.status == 400 and self.reason == "BadDeviceToken"

    @property
    def certificate_rejected(self) -> bool:
        """APNs refused the push certificate (403): expired, revoked or not for this topic."""
        return self.status == 403


def _retryable(status: int | None) -> bool:
    return status is None or status == 429 or status >= 500


def _device_path(token: str) -> str:
    if not isinstance(token, str) or not _TOKEN.match(token):
        # A token ends up in the URL path; refuse anything but hex rather than send a wrong request.
        raise ValueError(f"device token must be an even-length hex string, got {token!r:.80}")
    return f"/3/device/{token}"


def _truncate(text: str) -> str:
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def _describe(exc: BaseException) -> str:
    """`ConnectError: <first message in the cause chain>`: transport errors often wrap an empty
    message around the one that says what happened (connection refused, reset, certificate verify
    failed)."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen and len(seen) < 10:
        seen.append(cause)
        text = str(cause).strip()
        if text:
            return _truncate(f"{type(exc).__name__}: {text}")
        cause = cause.__cause__ or cause.__context__
    return _truncate(type(exc).__name__)


def _reason_from(response: H2Response) -> str | None:
    try:
        body = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return _truncate(reason) if isinstance(reason, str) else None


def _private_temp_root() -> str | None:
    """A RAM-backed directory when there is one, so the key never reaches a disk even briefly."""
    shm = "/dev/shm"  # noqa: S108 - only ever the parent of a mkdtemp (0700, unpredictable) directory
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _refuse_password() -> bytes:
    # Never let OpenSSL prompt on a terminal; the key was checked to be unencrypted already.
    raise PushCredentialsError("the push certificate key must be decrypted before use")


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _checked_key_pem(credentials: PushCredentials) -> bytes:
    """The key as unencrypted PKCS#8 PEM, after checking it is one and that it matches the certificate."""
    try:
        certificates = x509.load_pem_x509_certificates(credentials.cert_pem)
    except ValueError as exc:
        raise PushCredentialsError(f"push certificate is not a PEM certificate: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    except TypeError as exc:
        raise PushCredentialsError("push certificate key is encrypted; decrypt it first") from exc
    except ValueError as exc:
        raise PushCredentialsError("push certificate key is not a PEM private key") from exc
    if _spki(key.public_key()) != _spki(certificates[0].public_key()):
        raise PushCredentialsError("push certificate key does not match the certificate")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def client_ssl_context(credentials: PushCredentials, ca_file: str | None = None) -> ssl.SSLContext:
    """A TLS context presenting the push certificate; trusts `ca_file` only, or the system store.

    `load_cert_chain` reads only files, so the key lives for a moment in a 0600 file inside a
    private (0700) temporary directory, and is deleted as soon as OpenSSL has read it.
    """
    if not credentials.topic:
        raise PushCredentialsError("push credentials have no topic")
    key_pem = _checked_key_pem(credentials)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="hikeshi-apns-", dir=_private_temp_root()) as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        _write_private(cert_path, credentials.cert_pem)
        _write_private(key_path, key_pem)
        try:
            context.load_cert_chain(cert_path, key_path, password=_refuse_password)
        except ssl.SSLError as exc:
            raise PushCredentialsError(f"push certificate cannot be loaded: {exc}") from exc
        finally:
            key_path.unlink(missing_ok=True)
    return context


class ApnsClient:
    """Sends MDM pushes to APNs on warm HTTP/2 connections, retrying what is worth retrying.

    Retried (up to `max_attempts`, exponential backoff with full jitter, at least Retry-After when
    the server sends one): 429, 5xx, and no answer at all (connection error, timeout). Never
    retried: every other status, notably 400, 403, 404 and 410, which a retry cannot change.
    A Retry-After longer than `backoff_cap` ends the retries: waiting that long here would hold
    the dispatcher, and its next round will push again anyway.
    """

    def __init__(
        self,
        base_url: str,
        credentials: PushCredentials,
        *,
        ca_file: str | None = None,
        timeout: float = 10.0,
        expiration_seconds: int = 7 * 24 * 3600,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_concurrency: int = 100,
        connections: int = 1,
    ) -> None:
        """`max_concurrency` bounds the streams in flight on each connection (APNs' own limit
        applies too); `connections` is the most connections the client opens (the pool's size)."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if expiration_seconds < 0:
            raise ValueError("expiration_seconds must not be negative")
        self.credentials = credentials
        self._base_url = base_url.rstrip("/")
        self._expiration_seconds = expiration_seconds
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        if connections < 1:
            raise ValueError("connections must be at least 1")
        # A stream is taken per attempt, never held while sleeping between attempts.
        self._pool = H2Pool(
            self._base_url,
            client_ssl_context(credentials, ca_file),
            size=connections,
            streams_per_connection=max_concurrency,
            timeout=timeout,
            idle_seconds=IDLE_CONNECTION_SECONDS,
        )

    async def __aenter__(self) -> ApnsClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._pool.aclose()

    @property
    def open_connections(self) -> int:
        return len(self._pool.connections)

    def background_tasks(self) -> list[asyncio.Task[None]]:
        """Tasks that live as long as the connections (they read them): not pushes under way."""
        return self._pool.reader_tasks()

    def _expiration(self) -> str:
        # 0 has its own meaning to APNs: try once, store nothing.
        if self._expiration_seconds == 0:
            return "0"
        return str(int(clock.now().timestamp()) + self._expiration_seconds)

    async def push(self, token: str, push_magic: str) -> PushOutcome:
        """Wake one device; retries transient failures. Raises ValueError only for a malformed token."""
        path = _device_path(token)
        body = json.dumps({"mdm": push_magic}, separators=(",", ":")).encode()
        headers = [
            ("apns-topic", self.credentials.topic),
            ("apns-push-type", "mdm"),
            ("apns-priority", "10"),
            ("apns-expiration", self._expiration()),
            ("user-agent", "hikeshi-mdm"),
        ]
        attempt = 0
        while True:
            attempt += 1
            outcome, retry_after = await self._attempt(path, token, body, headers, attempt)
            if not _retryable(outcome.status) or attempt >= self._max_attempts:
                return outcome
            delay = backoff_delay(attempt, base=self._backoff_base, cap=self._backoff_cap)
            if retry_after is not None:
                if retry_after > self._backoff_cap:
                    return outcome
                delay = max(delay, retry_after)
            logger.debug(
                "APNs push to %s…: %s %s, retry %d in %.2fs",
                token[:8],
                outcome.status,
                outcome.reason,
                attempt + 1,
                delay,
            )
            await asyncio.sleep(delay)

    async def push_many(self, targets: Sequence[tuple[str, str]]) -> list[PushOutcome]:
        """Wake many devices concurrently on the pool; outcomes in the order of `targets`.

        Every token is checked before anything is sent, so a malformed one (ValueError) sends nothing.
        """
        targets = list(targets)
        for token, _magic in targets:
            _device_path(token)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.push(token, magic)) for token, magic in targets]
        return [task.result() for task in tasks]

    async def _attempt(
        self, path: str, token: str, body: bytes, headers: list[tuple[str, str]], attempt: int
    ) -> tuple[PushOutcome, float | None]:
        try:
            response = await self._pool.request(path, headers, body)
        except OSError as exc:
            # No answer: refused, reset, GOAWAY, timed out (TimeoutError), TLS failure (SSLError).
            return PushOutcome(token, None, _describe(exc), None, attempt), None
        status = response.status
        outcome = PushOutcome(
            token=token,
            status=status,
            reason=None if status == 200 else _reason_from(response),
            apns_id=response.headers.get("apns-id"),
            attempts=attempt,
        )
        return outcome, parse_retry_after(response.headers.get("retry-after"))
