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


def scalable_svg(code: segno.QRCode, *, scale: int, title: str) -> str:
    """An inline <svg> that keeps its drawing when a stylesheet resizes it.

    segno writes width and height but no viewBox; without one, a page that sets the element to
    80 mm shows the top-left corner of the code at its natural size and cuts the rest (a code no
    reader can scan). The viewBox makes the drawing scale to whatever box the page gives it; the
    width and height stay as its natural size where no stylesheet says otherwise.
    """
    svg = code.svg_inline(scale=scale, border=QUIET_ZONE, title=title)
    width, height = code.symbol_size(scale=scale, border=QUIET_ZONE)
    return svg.replace("<svg ", f'<svg viewBox="0 0 {width} {height}" ', 1)


def qr_svg_inline(url: str, *, scale: int = 8) -> str:
    """An <svg> element for embedding in an HTML page (the printable sheet)."""
    return scalable_svg(make_qr(url), scale=scale, title="Enrollment QR code")


def qr_png(url: str, *, scale: int = 8) -> bytes:
    out = io.BytesIO()
    make_qr(url).save(out, kind="png", scale=scale, border=QUIET_ZONE)
    return out.getvalue()
