"""The printed cloud-film slip: one A5 page, Chinese first, English below (issue 12).

A patient of 70 reads it at the desk or at home: every line is at least 12 pt, the QR
code is 50 mm wide (ISO/IEC 18004 with a 4-module quiet zone, drawn as vectors so it
prints sharp), and three drawn pictures show the steps: scan with the phone camera, tap the picture,
keep it in your folder. Below the QR code, the short address and a 10-character code
(services/access/films.py: typed at ``/code``, rate-limited) open the same film without a camera.
The words come from the portal's catalogue (web/films.py), so this module only lays them
out; the PIN itself is never printed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from reportlab.lib.pagesizes import A5
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from cloudfilm.services.access.films import SlipFacts
from cloudfilm.services.access.share_card import _WIDE, _draw_qr, _font, _text

MIN_PT = 12.0
_NO_LINE_START = "，。、；：？！）》」』"  # kinsoku: closing punctuation stays on its line


@dataclass(frozen=True)
class SlipWords:
    """The slip's words in one language (already translated)."""

    title: str
    hospital: str
    date: str
    exam: str
    steps: tuple[str, str, str]
    validity: str
    pin_note: str
    code_hint: str  # "No camera? Open <address> and type this code:"


def wrap(text: str, size: float, width: float, bold: bool = False) -> list[str]:
    """Lines no wider than ``width``: at spaces for Latin text, between any two
    characters for Chinese (which has no spaces; UAX #14 allows a break there)."""
    font = _font(text, bold)
    if not _WIDE.search(text):
        return simpleSplit(text, font, size, width) or [""]
    lines, current = [], ""
    for char in text:
        if current and char not in _NO_LINE_START \
                and stringWidth(current + char, font, size) > width:
            lines.append(current.rstrip())
            current = char.lstrip()
        else:
            current += char
    return [*lines, current] if current else lines or [""]


@dataclass
class _Pen:
    canvas: Canvas
    left: float
    width: float
    y: float

    def line(self, text: str, size: float = MIN_PT, bold: bool = False,
             gap: float = 1.45) -> None:
        for part in wrap(text, size, self.width, bold):
            self.y -= size * gap
            _text(self.canvas, self.left, self.y, part, size, bold)


def _facts_lines(zh: SlipWords, en: SlipWords, facts: SlipFacts) -> list[str]:
    return [f"{zh.hospital} {en.hospital}: {facts.hospital or '-'}",
            f"{zh.date} {en.date}: {facts.study_date or '-'}",
            f"{zh.exam} {en.exam}: {facts.exam or '-'}"]


def _pictogram(canvas: Canvas, step: int, x: float, y: float, size: float) -> None:
    """Simple line drawings: 1 a phone over a QR code, 2 a finger on a picture, 3 a folder."""
    canvas.setLineWidth(1.6)
    canvas.setStrokeColorRGB(0.1, 0.1, 0.1)
    if step == 0:
        canvas.roundRect(x + size * 0.3, y, size * 0.4, size * 0.95, 4, stroke=1, fill=0)
        for dx, dy in ((0.38, 0.55), (0.52, 0.55), (0.38, 0.35)):
            canvas.rect(x + size * dx, y + size * dy, size * 0.1, size * 0.1, stroke=0, fill=1)
    elif step == 1:
        canvas.rect(x + size * 0.15, y + size * 0.35, size * 0.7, size * 0.55, stroke=1, fill=0)
        canvas.circle(x + size * 0.5, y + size * 0.62, size * 0.14, stroke=1, fill=0)
        canvas.circle(x + size * 0.62, y + size * 0.2, size * 0.08, stroke=1, fill=1)
        canvas.line(x + size * 0.62, y + size * 0.2, x + size * 0.62, y)
    else:
        path = canvas.beginPath()
        path.moveTo(x + size * 0.1, y + size * 0.15)
        path.lineTo(x + size * 0.1, y + size * 0.8)
        path.lineTo(x + size * 0.4, y + size * 0.8)
        path.lineTo(x + size * 0.48, y + size * 0.7)
        path.lineTo(x + size * 0.9, y + size * 0.7)
        path.lineTo(x + size * 0.9, y + size * 0.15)
        path.close()
        canvas.drawPath(path, stroke=1, fill=0)
        canvas.line(x + size * 0.35, y + size * 0.42, x + size * 0.48, y + size * 0.3)
        canvas.line(x + size * 0.48, y + size * 0.3, x + size * 0.68, y + size * 0.55)


def _steps(canvas: Canvas, left: float, width: float, top: float,
           pictures: list[tuple[str, str]]) -> float:
    """Three columns: a picture, then the step in Chinese and in English; returns the bottom."""
    column, picture = width / 3, 15 * mm
    lowest = top
    for number, (zh, en) in enumerate(pictures):
        x = left + number * column
        _pictogram(canvas, number, x + (column - picture) / 2, top - picture, picture)
        pen = _Pen(canvas, x + 2, column - 6, top - picture - 2)
        pen.line(f"{number + 1}. {zh}", bold=True, gap=1.3)
        pen.line(en, gap=1.3)
        lowest = min(lowest, pen.y)
    return lowest


def _code(pen: _Pen, code: str, zh: SlipWords, en: SlipWords) -> None:
    """The typed way in, for a phone without a camera: the address and the short code."""
    pen.line(zh.code_hint)
    pen.line(en.code_hint)
    size = 24.0
    pen.y -= size * 1.3
    pen.canvas.setFont("Courier-Bold", size)
    pen.canvas.drawCentredString(pen.left + pen.width / 2, pen.y, code)


def slip_pdf(facts: SlipFacts, url: str, code: str, zh: SlipWords, en: SlipWords) -> bytes:
    """One A5 page: title, exam facts, QR code, the short code to type, three steps,
    validity. ``url`` is what the QR code holds; ``code`` opens the same film."""
    out = io.BytesIO()
    width, height = A5
    margin = 12 * mm
    canvas = Canvas(out, pagesize=A5, pageCompression=1, invariant=1)
    canvas.setTitle(f"{zh.title} / {en.title}")
    pen = _Pen(canvas, margin, width - 2 * margin, height - 6 * mm)
    pen.line(zh.title, 20, bold=True)
    pen.line(en.title, 14, bold=True)
    for line in _facts_lines(zh, en, facts):
        pen.line(line, 13)
    qr_size = 50 * mm
    pen.y -= qr_size + 2 * mm
    _draw_qr(canvas, url, (width - qr_size) / 2, pen.y, qr_size)
    _code(pen, code, zh, en)
    bottom = _steps(canvas, margin, pen.width, pen.y - 4 * mm,
                    list(zip(zh.steps, en.steps, strict=True)))
    pen.y = bottom
    pen.line(zh.validity, gap=1.3)
    pen.line(en.validity, gap=1.3)
    if facts.has_pin:
        pen.line(zh.pin_note, gap=1.3)
        pen.line(en.pin_note, gap=1.3)
    canvas.showPage()
    canvas.save()
    return out.getvalue()
