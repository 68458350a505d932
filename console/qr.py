"""QR codes of rendition links, for the visitor to scan: SVG for the page, PNG for anything else."""

from __future__ import annotations

import cv2
import numpy as np
import qrcode
import qrcode.image.svg


def _code(url: str) -> qrcode.QRCode:
    if not url:
        raise ValueError("a QR code needs a non-empty link")
    # Medium error correction survives a scratched or glare-washed screen.
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(url)
    code.make(fit=True)
    return code


def qr_version(url: str) -> int:
    """The code's version: 1 is 21 modules a side, each step 4 more (a denser code)."""
    return int(_code(url).version)


def qr_svg(url: str) -> bytes:
    return _code(url).make_image(image_factory=qrcode.image.svg.SvgPathImage).to_string()


def qr_png(url: str, module_px: int = 8) -> bytes:
    modules = np.asarray(_code(url).get_matrix(), dtype=bool)  # True = dark, quiet zone included
    image = np.where(modules, 0, 255).astype(np.uint8)
    image = np.repeat(np.repeat(image, module_px, axis=0), module_px, axis=1)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding of the QR code failed")
    return png.tobytes()
