"""The share link as a QR code (PNG, SVG) and a printable one-page card (PDF).

Issue "People, access and sharing": the card shows the patient's name masked
(张三 → 张*, 张三丰 → 张*丰, Zhang^San → Z***g S*n), the study date(s) and hospital,
the QR code and the URL, and how the PIN works when one is set (never the PIN).
Chinese text uses reportlab's built-in CID font STSong-Light (no font files needed).
"""

from __future__ import annotations

import io
import re
from functools import lru_cache

import segno
from reportlab.lib.pagesizes import A6
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from cloudfilm.services.sharing import CardFacts

CJK_FONT = "STSong-Light"
_WIDE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
MAX_CARD_STUDIES = 5


def _qr(url: str) -> segno.QRCode:
    return segno.make(url, error="m", micro=False)


def qr_png(url: str, scale: int = 8) -> bytes:
    """The link as a PNG QR code (4-module quiet zone, PS: ISO/IEC 18004)."""
    out = io.BytesIO()
    _qr(url).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_svg(url: str, scale: int = 8) -> bytes:
    out = io.BytesIO()
    _qr(url).save(out, kind="svg", scale=scale, border=4, xmldecl=True, title="Share link")
    return out.getvalue()


# -- name masking ------------------------------------------------------------------------


def _mask_word(word: str) -> str:
    """Keep the first and last character: Zhang → Z***g, San → S*n, 张三 → 张*, 张三丰 → 张*丰."""
    if len(word) <= 1:
        return word
    if len(word) == 2:
        return word[0] + "*"
    return word[0] + "*" * (len(word) - 2) + word[-1]


def mask_group(group: str) -> str:
    """One PN component group: CJK names as one word, others word by word."""
    text = group.replace("^", " ").strip()
    if _WIDE.search(text) and " " not in text:
        return _mask_word(text)
    return " ".join(_mask_word(w) for w in text.split())


def mask_name(name: str) -> str:
    """A DICOM PN (``Zhang^San=张三``) or a plain name, masked group by group."""
    groups = [mask_group(g) for g in name.split("=")]
    return " / ".join(g for g in groups if g)


# -- the card ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _register_cjk() -> str:
    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    return CJK_FONT


def _font(text: str, bold: bool = False) -> str:
    if any(ord(c) > 0x7F for c in text):
        return _register_cjk()
    return "Helvetica-Bold" if bold else "Helvetica"


def _text(canvas: Canvas, x: float, y: float, text: str, size: float, bold: bool = False) -> None:
    canvas.setFont(_font(text, bold), size)
    canvas.drawString(x, y, text)


def _draw_qr(canvas: Canvas, url: str, x: float, y: float, size: float) -> None:
    """The QR code as vector squares, so it prints sharp at any size."""
    matrix = [list(row) for row in _qr(url).matrix]
    count = len(matrix) + 8  # quiet zone of 4 modules each side
    module = size / count
    canvas.setFillColorRGB(0, 0, 0)
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                canvas.rect(x + (c + 4) * module, y + size - (r + 5) * module, module, module,
                            stroke=0, fill=1)


def _fitted(text: str, size: float, width: float, bold: bool = False) -> list[str]:
    """Greedy word wrap to ``width`` points in the font the text will use."""
    return simpleSplit(text, _font(text, bold), size, width) or [""]


def _chunks(text: str, length: int) -> list[str]:
    return [text[i:i + length] for i in range(0, len(text), length)] or [""]


def _study_lines(facts: CardFacts) -> list[str]:
    lines = [" | ".join(p for p in (s.date, s.hospital, s.description) if p)
             for s in facts.studies[:MAX_CARD_STUDIES]]
    if len(facts.studies) > MAX_CARD_STUDIES:
        lines.append(f"+ {len(facts.studies) - MAX_CARD_STUDIES} more")
    return lines or ["(no studies yet)"]


def _footer_lines(facts: CardFacts) -> list[str]:
    until = f"Valid until {facts.valid_until.isoformat()}." if facts.valid_until else "No end date."
    lines = [until + " Scan the code with a phone camera, or type the address above."]
    if facts.has_pin:
        lines.append("This link is protected by a PIN: ask the patient for it (it is not printed "
                     "here). After 5 wrong PINs the link locks for 15 minutes.")
    return lines


def card_pdf(facts: CardFacts, url: str) -> bytes:
    """A one-page A6 card: masked name, studies, QR code, URL, validity and PIN notes."""
    out = io.BytesIO()
    width, height = A6
    margin = 10 * mm
    text_width = width - 2 * margin
    canvas = Canvas(out, pagesize=A6, pageCompression=1, invariant=1)
    canvas.setTitle("cloudfilm share card")
    y = height - 14 * mm
    _text(canvas, margin, y, "Medical images shared with you", 12, bold=True)
    y -= 8 * mm
    _text(canvas, margin, y, "Patient: " + (mask_name(facts.patient_name) or "-"), 10)
    for line in _study_lines(facts):
        for part in _fitted(line, 8, text_width)[:2]:
            y -= 4.5 * mm
            _text(canvas, margin, y, part, 8)
    qr_size = 52 * mm
    y -= qr_size + 3 * mm
    _draw_qr(canvas, url, (width - qr_size) / 2, y, qr_size)
    for line in _chunks(url, int(text_width // (0.6 * 7.5))):
        y -= 4 * mm
        canvas.setFont("Courier", 7.5)
        canvas.drawString(margin, y, line)
    y -= 1.5 * mm
    for paragraph in _footer_lines(facts):
        for line in _fitted(paragraph, 7, text_width):
            y -= 3.6 * mm
            _text(canvas, margin, y, line, 7)
    canvas.showPage()
    canvas.save()
    return out.getvalue()
