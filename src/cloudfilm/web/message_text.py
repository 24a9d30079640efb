"""In-app messages in the reader's language, whatever language they were queued in.

Why: the services queue a message once (services/notify/outbox.py), as English text with its
values filled in, before anyone knows who will read it in which language. The /messages
page translates it when it is shown: a catalogue id as is; a filled-in template by
matching it against the template (its values come back out, and are translated in turn
when they are phrases of their own); a bilingual "English / 中文" message by keeping the
reader's half. A message that matches nothing is shown as queued.
"""

from __future__ import annotations

import re
from functools import cache

from cloudfilm.i18n import N_, Localizer

# Texts the services queue word for word (services/access/people.py).
CATALOGUE_TEXTS = (
    N_("A family helper was removed"),
    N_("They can no longer see or share your images. The links and shares they made for you "
       "no longer open."),
)
# Templates the services fill in: sharing.py (a link was opened), reminders.py (a share ends).
TEMPLATES = (
    N_("Your shared images were opened"),
    N_("Your share #%(id)s was opened at %(when)s UTC (opened %(count)s time(s) so far)."),
    N_("A share of %(whose)s's images ends on %(date)s"),
    N_("The share of %(scope)s of %(whose)s with %(audience)s (share #%(id)s) ends on %(date)s. "
       "After that day it no longer opens.\n\nTo keep it, renew it in cloudfilm under Sharing; "
       "to end it now, revoke it there.\n"),
)
# Phrases that fill the templates above (reminders.py), translated when they come back out.
PHRASES = (
    N_("the patient"), N_("the whole imaging timeline"), N_("%(num)s study"),
    N_("%(num)s studies"), N_("%(name)s (physician)"), N_("a physician"),
    N_("a link protected by a PIN"), N_("a link"),
)
CJK = re.compile(r"[\u4e00-\u9fff]")


@cache
def _pattern(template: str) -> re.Pattern[str]:
    """The template as a regular expression whose groups are its ``%(name)s`` values."""
    pieces = re.split(r"%\((\w+)\)s", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)"
                              for i, p in enumerate(pieces)) + r"\Z", re.S)


def _filled(loc: Localizer, text: str, templates: tuple[str, ...]) -> str | None:
    for template in templates:
        found = _pattern(template).match(text)
        if found is not None:
            values = {k: _filled(loc, v, PHRASES) or v for k, v in found.groupdict().items()}
            return loc.gettext(template) % values if values else loc.gettext(template)
    return None


def _reader_half(loc: Localizer, text: str) -> str | None:
    """Of a bilingual text ("English / 中文", or paragraphs then "---" then 中文), the half
    in the reader's language; None when the text is not bilingual."""
    for separator in ("\n\n---\n\n", " / "):
        english, found, chinese = text.partition(separator)
        if found and CJK.search(chinese) and not CJK.search(english):
            return chinese if loc.language == "zh" else english
    return None


def in_reader_language(loc: Localizer, text: str) -> str:
    """One subject or body as the reader reads it ("" stays "": it is no catalogue id)."""
    if not text:
        return ""
    if text in CATALOGUE_TEXTS:
        return loc.gettext(text)
    return _filled(loc, text, TEMPLATES) or _reader_half(loc, text) or text
