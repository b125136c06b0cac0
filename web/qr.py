"""QR codes as inline SVG: no script, no style attribute, so the strict CSP holds."""

from __future__ import annotations

from markupsafe import Markup

from enrollment.qr import make_qr, scalable_svg


def qr_svg(text: str, *, scale: int = 4, title: str = "QR code") -> Markup:
    # A full QR code (never a Micro QR, which phone cameras and zbar do not read), with a viewBox
    # so that a stylesheet may resize it without cutting it off.
    svg = scalable_svg(make_qr(text), scale=scale, title=title)
    # segno writes only path data and numeric attributes; the encoded text never appears in it.
    return Markup(svg)  # noqa: S704
