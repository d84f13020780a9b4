"""QR codes of payment tokens: a terminal rendering in half blocks, PNG and SVG.

A terminal cell holds two QR modules stacked: the upper half block `▀` in the top module's colour
on a background of the bottom module's colour. Both colours are always set explicitly, to the
fixed 256-colour cube entries 16 (#000000) and 231 (#FFFFFF), which colour themes do not remap,
so the code scans on dark and light themes alike. The 4-module quiet zone is part of the matrix.
"""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
from qrcode.image.pil import PilImage
from qrcode.image.svg import SvgPathImage

QUIET_ZONE = 4
ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M
UPPER_HALF = "▀"
_FG = {True: "\x1b[38;5;16m", False: "\x1b[38;5;231m"}
_BG = {True: "\x1b[48;5;16m", False: "\x1b[48;5;231m"}
_RESET = "\x1b[0m"

Matrix = list[list[bool]]


def _code(text: str) -> qrcode.QRCode[PilImage]:
    code: qrcode.QRCode[PilImage] = qrcode.QRCode(
        error_correction=ERROR_CORRECTION, border=QUIET_ZONE, image_factory=PilImage
    )
    code.add_data(text.encode("ascii"))
    code.make(fit=True)
    return code


def version(text: str) -> int:
    """The QR version (size class) the text needs."""
    return int(_code(text).version)


def matrix(text: str) -> Matrix:
    """Modules, True for dark, including the quiet zone."""
    return [list(row) for row in _code(text).get_matrix()]


def half_block_cells(modules: Matrix) -> list[list[tuple[bool, bool]]]:
    """(top dark, bottom dark) per terminal cell; an odd last row is padded with a light row."""
    rows = modules + ([[False] * len(modules[0])] if len(modules) % 2 else [])
    return [list(zip(rows[i], rows[i + 1], strict=True)) for i in range(0, len(rows), 2)]


def render_half_blocks(text: str) -> str:
    """The QR code as ANSI text, two modules per character cell, colours always explicit."""
    lines = []
    for row in half_block_cells(matrix(text)):
        cells = "".join(f"{_FG[top]}{_BG[bottom]}{UPPER_HALF}" for top, bottom in row)
        lines.append(cells + _RESET)
    return "\n".join(lines)


def parse_half_blocks(rendered: str) -> Matrix:
    """Read the modules back from `render_half_blocks` output (used to check the rendering)."""
    out: Matrix = []
    for line in rendered.split("\n"):
        cells = line.removesuffix(_RESET).split(UPPER_HALF)[:-1]
        top = [cell.startswith(_FG[True]) for cell in cells]
        bottom = [cell.endswith(_BG[True]) for cell in cells]
        out += [top, bottom]
    return out


def png(text: str, *, scale: int = 8) -> bytes:
    """A black-on-white PNG, `scale` pixels per module, quiet zone included."""
    code = _code(text)
    code.box_size = scale
    image = code.make_image(fill_color="black", back_color="white")
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


def svg(text: str) -> str:
    """An SVG path image (scales without blur), quiet zone included."""
    code = _code(text)
    image = code.make_image(image_factory=SvgPathImage)
    return image.to_string(encoding="unicode")  # type: ignore[no-any-return]
