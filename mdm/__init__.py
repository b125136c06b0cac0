"""Hikeshi MDM core.

`create_app` imports lazily: importing `mdm.models` or `mdm.clock` must not pull the whole
application (and the web layer) in, or the layer rule could not hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings: Any = None, **overrides: Any) -> Flask:
    from mdm.app import build_app

    return build_app(settings, **overrides)
