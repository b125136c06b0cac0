"""QR codes for enrollment URLs (segno): error correction M, the standard 4-module quiet zone."""

from __future__ import annotations

import io

import segno

ERROR_CORRECTION = "m"
QUIET_ZONE = 4


def make_qr(url: str) -> segno.QRCode:
    # boost_error=False keeps level M exactly as specified instead of raising it when it fits.
    return segno.make_qr(url, error=ERROR_CORRECTION, boost_error=False)


def qr_svg(url: str, *, scale: int = 8) -> bytes:
    out = io.BytesIO()
    make_qr(url).save(
        out, kind="svg", scale=scale, border=QUIET_ZONE, xmldecl=True, title="Enrollment QR code"
    )
    return out.getvalue()


def qr_svg_inline(url: str, *, scale: int = 8) -> str:
    """An <svg> element for embedding in an HTML page (the printable sheet)."""
    return make_qr(url).svg_inline(scale=scale, border=QUIET_ZONE, title="Enrollment QR code")


def qr_png(url: str, *, scale: int = 8) -> bytes:
    out = io.BytesIO()
    make_qr(url).save(out, kind="png", scale=scale, border=QUIET_ZONE)
    return out.getvalue()
