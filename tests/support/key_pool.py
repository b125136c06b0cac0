"""Real RSA keys for the built-in CA, generated once per run instead of once per app.

Every app a test builds on an empty database creates the built-in CA (3072-bit) and the profile
signer (2048-bit) in `mdm.ground.ca.ensure_ca`; generating them was seconds per test on a busy CI
machine. The pool hands out, inside one test, the 1st, 2nd, ... key of each size, each a distinct
real key generated the first time some test needed that many: two CAs (or a renewed signer) in one
test still get different keys, exactly as before, while the code under test runs unchanged.
"""

from __future__ import annotations

import threading
import types
from collections import Counter
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

_generate = rsa.generate_private_key


class KeyPool:
    def __init__(self) -> None:
        self._keys: dict[int, list[rsa.RSAPrivateKey]] = {}
        self._used: Counter[int] = Counter()
        self._lock = threading.Lock()

    def new_test(self) -> None:
        with self._lock:
            self._used.clear()

    def generate_private_key(
        self, public_exponent: int, key_size: int, backend: Any = None
    ) -> rsa.RSAPrivateKey:
        if public_exponent != 65537:
            return _generate(public_exponent=public_exponent, key_size=key_size)
        with self._lock:
            nth = self._used[key_size]
            self._used[key_size] += 1
            keys = self._keys.setdefault(key_size, [])
            while len(keys) <= nth:
                keys.append(_generate(public_exponent=65537, key_size=key_size))
            return keys[nth]

    def as_rsa_module(self) -> types.SimpleNamespace:
        """`cryptography`'s rsa module as the CA code sees it, with this pool's generator."""
        return types.SimpleNamespace(**{**vars(rsa), "generate_private_key": self.generate_private_key})


POOL = KeyPool()
