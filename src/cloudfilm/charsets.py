"""Process-wide pydicom character-set settings, applied before any file is read.

pydicom 3.0 lists ``iso_ir_58`` (ISO 2022 IR 58, GB2312) among the encodings whose
Python codec handles ISO 2022 escape sequences itself. Python's codec does not,
so ``ESC $ ) A`` leaked into decoded Chinese names and they could not be matched.
Leaving it out makes pydicom split on the escape sequences (PS3.5 §6.1.2.5.3).
"""

from __future__ import annotations

import pydicom.charset

ESCAPE_AWARE_CODECS = ("iso2022_jp", "iso2022_jp_2")


def configure() -> None:
    pydicom.charset.handled_encodings = ESCAPE_AWARE_CODECS  # type: ignore[assignment]
