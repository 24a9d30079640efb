"""The share link as a QR code (PNG, SVG) and a printable one-page card (PDF).

Issue "People, access and sharing": the card shows the patient's name masked
(张三 → 张*, 张三丰 → 张*丰, Zhang^San → Z***g S*n), the study date(s) and hospital,
the QR code and the URL, and how the PIN works when one is set (never the PIN).
Issue 12: Chinese first with English below, at least 12 pt, on A5. Chinese text uses
reportlab's built-in CID font STSong-Light (no font files needed).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import segno
from reportlab.lib.pagesizes import A5
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from cloudfilm.services.access.sharing import CardFacts

CJK_FONT = "STSong-Light"
_WIDE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
MAX_CARD_STUDIES = 5
MIN_PT = 12.0  # the smallest text on the card: read by people of 70 and more


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


@dataclass(frozen=True)
class CardWords:
    """The card's words in one language, already translated (web/card_words.py)."""

    title: str
    patient: str
    more: str  # "+ %(num)s more", filled here
    no_studies: str
    validity: str  # "valid until <date>" or "no end date", already filled
    scan: str
    pin_note: str


def _study_lines(facts: CardFacts, words: CardWords) -> list[str]:
    lines = [" | ".join(p for p in (s.date, s.hospital, s.description) if p)
             for s in facts.studies[:MAX_CARD_STUDIES]]
    if len(facts.studies) > MAX_CARD_STUDIES:
        lines.append(words.more % {"num": len(facts.studies) - MAX_CARD_STUDIES})
    return lines or [words.no_studies]


@dataclass
class _Pen:
    """Writes lines downwards from ``y``, wrapped to the card's text width."""

    canvas: Canvas
    left: float
    width: float
    y: float

    def line(self, text: str, size: float = MIN_PT, bold: bool = False) -> None:
        for part in _fitted(text, size, self.width, bold):
            self.y -= size * 1.4
            _text(self.canvas, self.left, self.y, part, size, bold)


def _bilingual(pen: _Pen, words: Sequence[CardWords], field_name: str, bold: bool = False,
               size: float = MIN_PT) -> None:
    for language in words:
        pen.line(getattr(language, field_name), size, bold)


def card_pdf(facts: CardFacts, url: str, words: Sequence[CardWords]) -> bytes:
    """A one-page A5 card, Chinese first and English below, every line at least 12 pt (a
    patient of 70 reads it): masked name, studies, QR code, URL, validity and PIN notes.
    ``words`` (Chinese, then English) come from the portal's catalogue (web/card_words.py)."""
    words = list(words)
    out = io.BytesIO()
    width, height = A5
    canvas = Canvas(out, pagesize=A5, pageCompression=1, invariant=1)
    canvas.setTitle("cloudfilm share card")
    pen = _Pen(canvas, 12 * mm, width - 24 * mm, height - 8 * mm)
    _bilingual(pen, words, "title", bold=True, size=16)
    pen.line(" / ".join(w.patient for w in words) + ": " + (mask_name(facts.patient_name) or "-"))
    for line in _study_lines(facts, words[-1]):
        pen.line(line)
    qr_size = 56 * mm
    pen.y -= qr_size + 3 * mm
    _draw_qr(canvas, url, (width - qr_size) / 2, pen.y, qr_size)
    for line in _chunks(url, int(pen.width // (0.6 * 10))):
        pen.y -= 12
        canvas.setFont("Courier", 10)
        canvas.drawString(pen.left, pen.y, line)
    for field_name in ("validity", "scan") + (("pin_note",) if facts.has_pin else ()):
        pen.y -= 3
        _bilingual(pen, words, field_name)
    canvas.showPage()
    canvas.save()
    return out.getvalue()
