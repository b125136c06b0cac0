"""Which certificate authorities may vouch for a device identity.

Every device request asks this, so the answer is cached per process (issue 18: reading and parsing
the CAs was an eighth of an empty check-in's time): the external CA bundle
(HIKESHI_DEVICE_CA_FILE) by its path, modification time and size, so an edited file is read again
at the next request; the built-in CA's generations per database engine, for at most
BUILTIN_CA_TTL_SECONDS, and read again at once when a certificate names none of the cached ones
(a generation created by `hikeshi ca rotate` in another process is trusted at its first use).
A CA removed from the database (a restored backup) stops being trusted within the TTL.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.ca import builtin_device_cas
from mdm.ground.config import Settings
from mdm.ground.identity.signature import UntrustedCertificate, verify_chain
from mdm.ground.x509util import issued_by, load_pem_bundle

BUILTIN_CA_TTL_SECONDS = 60.0


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[float, ...]  # the file's (mtime, size, inode), or the monotonic time of the read
    cas: tuple[x509.Certificate, ...]


_lock = threading.Lock()
_files: dict[str, _Loaded] = {}
_builtin: weakref.WeakKeyDictionary[Engine, _Loaded] = weakref.WeakKeyDictionary()


def _file_cas(path: str) -> tuple[x509.Certificate, ...]:
    stat = os.stat(path)
    stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    cached = _files.get(path)
    if cached is not None and cached.stamp == stamp:
        return cached.cas
    loaded = _Loaded(stamp, tuple(load_pem_bundle(Path(path).read_bytes())))
    with _lock:
        _files[path] = loaded
    return loaded.cas


def _engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def builtin_cas(session: Session, settings: Settings, *, refresh: bool = False) -> list[x509.Certificate]:
    """Every generation of the built-in device CA (cached; `refresh` reads the database now)."""
    engine = _engine_of(session)
    now = time.monotonic()
    cached = _builtin.get(engine)
    if not refresh and cached is not None and now - cached.stamp[0] < BUILTIN_CA_TTL_SECONDS:
        return list(cached.cas)
    cas = tuple(builtin_device_cas(session, settings))
    with _lock:
        _builtin[engine] = _Loaded((now,), cas)
    return list(cas)


def trusted_device_cas(
    session: Session, settings: Settings, *, refresh: bool = False
) -> list[x509.Certificate]:
    """The built-in enrollment CA, plus any external device CA configured by HIKESHI_DEVICE_CA_FILE."""
    cas: list[x509.Certificate] = []
    if settings.device_ca_file:
        cas.extend(_file_cas(settings.device_ca_file))
    cas.extend(builtin_cas(session, settings, refresh=refresh))
    return cas


def verify_device_certificate(
    session: Session, settings: Settings, cert: x509.Certificate
) -> x509.Certificate:
    """The trusted CA that issued `cert`; SignatureError unless `cert` chains to a trusted device
    CA and is valid now: the one test of trust every device door (Apple, Android) applies before
    it asks who the device is."""
    now = clock.now()
    try:
        return verify_chain(cert, trusted_device_cas(session, settings), now)
    except UntrustedCertificate:
        # Perhaps a CA generation newer than the cache: ask the database before refusing.
        return verify_chain(cert, trusted_device_cas(session, settings, refresh=True), now)


def issued_by_builtin_ca(
    session: Session, settings: Settings, cert: x509.Certificate, issuer: x509.Certificate | None = None
) -> bool:
    """Whether a generation of the built-in CA signed `cert` (after verify_device_certificate,
    which has refreshed the cache if `cert` needed a newer generation).

    `issuer`: the CA verify_device_certificate returned. When it is a built-in generation the
    answer is known without verifying the signature again (a device request's second RSA check).
    """
    builtin = builtin_cas(session, settings)
    if issuer is not None and issuer in builtin:
        return True
    return any(issued_by(cert, ca) for ca in builtin)
