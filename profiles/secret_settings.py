"""Secrets inside profile specs (Wi-Fi passphrases): sealed at rest, shown to nobody, added only
when a profile is rendered for delivery.

A stored spec (profiles.spec, and every saved version) holds each secret setting as
`sealed:v1:<base64>` (mdm.ground.secretbox, purpose "profile-setting"). An administrator types the clear
value once; afterwards every reader (API, console, preview) sees REDACTED, and sending REDACTED
back in an edit keeps the stored value. Renderers reveal a sealed value only when their
RenderContext carries the instance secret: the rendering shared by every device, stored once
per version and copied into each InstallProfile command, is made without it, and the per-device
rendering at delivery (profiles.device_identity), the Android agent's policy and an
administrator's export are made with it.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

from marshmallow import ValidationError

from mdm.ground.secretbox import seal, unseal
from profiles.spec import payload_keys

PURPOSE = "profile-setting"
SEALED_PREFIX = "sealed:v1:"
REDACTED = "********"
# Settings that hold a secret, per payload kind. EAP-TLS carries no password by design (wifi.py);
# certificates payloads carry public certificates only.
SECRET_SETTINGS: dict[str, tuple[str, ...]] = {"wifi": ("password",)}


class SecretKeyMissing(RuntimeError):
    """A spec with secrets was stored or revealed without the instance secret (a wiring bug)."""


def is_sealed(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal_value(secret_key: str, clear: str) -> str:
    return SEALED_PREFIX + base64.b64encode(seal(secret_key, PURPOSE, clear.encode("utf-8"))).decode("ascii")


def unseal_value(secret_key: str, sealed: str) -> str:
    return unseal(secret_key, PURPOSE, base64.b64decode(sealed[len(SEALED_PREFIX) :])).decode("utf-8")


def secret_settings(spec: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(payload index, payload settings, setting name) of every secret setting present in `spec`."""
    payloads = spec.get("payloads") if isinstance(spec, Mapping) else None
    if not isinstance(payloads, list):
        return
    for index, payload in enumerate(payloads):
        if not isinstance(payload, Mapping):
            continue
        settings = payload.get("settings")
        if not isinstance(settings, dict):
            continue
        for name in SECRET_SETTINGS.get(str(payload.get("kind")), ()):
            if name in settings:
                yield index, settings, name


def has_secrets(spec: Mapping[str, Any]) -> bool:
    return any(True for _ in secret_settings(spec))


def redacted_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `spec` with every secret setting replaced by REDACTED."""
    clean = copy.deepcopy(dict(spec))
    for _index, settings, name in secret_settings(clean):
        settings[name] = REDACTED
    return clean


def _keyed(spec: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(kind, key) → settings of a stored spec (its payloads all have keys)."""
    return {
        (str(p.get("kind")), str(p.get("key"))): p.get("settings") or {}
        for p in spec.get("payloads", [])
        if isinstance(p, Mapping)
    }


def keep_unchanged_secrets(
    incoming: Mapping[str, Any], previous: Mapping[str, Any] | None, secret_key: str | None
) -> Any:
    """Outside data with each REDACTED secret replaced by the stored clear value of the same
    payload (kind and key), so an edit of a redacted spec keeps the passphrase.

    A REDACTED secret with nothing stored under that payload is refused, naming the field."""
    if not isinstance(incoming, Mapping):
        return incoming
    spec = copy.deepcopy(dict(incoming))
    placeholders = [(i, s, n) for i, s, n in secret_settings(spec) if s.get(n) == REDACTED]
    if not placeholders:
        return spec
    payloads = spec["payloads"]
    try:
        keys = payload_keys(payloads)
    except (KeyError, TypeError, AttributeError):
        return spec  # malformed: validation names the fault
    stored = _keyed(previous or {})
    errors: dict[int, dict[str, Any]] = {}
    for index, settings, name in placeholders:
        old = stored.get((str(payloads[index].get("kind")), keys[index]), {}).get(name)
        if is_sealed(old) and secret_key is not None:
            settings[name] = unseal_value(secret_key, old)
        else:
            errors[index] = {
                "settings": {name: ["Give the secret itself: nothing is stored for this payload yet."]}
            }
    if errors:
        raise ValidationError({"payloads": errors})
    return spec


def seal_spec(
    clean: Mapping[str, Any], secret_key: str | None, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The stored form of a validated spec: every secret sealed. A secret equal to the one stored
    for the same payload keeps its sealed value, so an unchanged spec compares equal."""
    sealed = copy.deepcopy(dict(clean))
    stored = _keyed(previous or {})
    payloads = sealed.get("payloads", [])
    for index, settings, name in secret_settings(sealed):
        value = settings[name]
        if is_sealed(value):
            continue
        if secret_key is None:
            raise SecretKeyMissing("a profile with secrets is stored only with the instance secret")
        payload = payloads[index]
        old = stored.get((str(payload.get("kind")), str(payload.get("key"))), {}).get(name)
        if is_sealed(old) and unseal_value(secret_key, old) == value:
            settings[name] = old
        else:
            settings[name] = seal_value(secret_key, str(value))
    return sealed


def reveal_spec(spec: Mapping[str, Any], secret_key: str | None) -> Mapping[str, Any]:
    """`spec` as a renderer reads it: sealed secrets in clear with the instance secret, left out
    without it. A spec without sealed values is returned as it is."""
    if not any(is_sealed(s[n]) for _i, s, n in secret_settings(spec)):
        return spec
    revealed = copy.deepcopy(dict(spec))
    for _index, settings, name in secret_settings(revealed):
        if not is_sealed(settings[name]):
            continue
        if secret_key is None:
            del settings[name]
        else:
            settings[name] = unseal_value(secret_key, settings[name])
    return revealed
