"""English and German: message catalogues (gettext ``.po`` files read with Babel) and negotiation.

Templates mark text as ``{{ _("...") }}``; ``pybabel extract -F babel.cfg`` finds those strings and
``pybabel update`` merges them into ``locale/de/LC_MESSAGES/messages.po``. The catalogue is read from
the ``.po`` file at start-up, so no compiled ``.mo`` file has to be kept in step. Setting labels,
questions and explanations come in both languages from the taxonomy itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.pofile import read_po

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Translations:
    messages: dict[str, dict[str, str]]
    """language → msgid → translated text (English is the msgid itself)."""

    def gettext(self, language: str) -> Callable[[str], str]:
        table = self.messages.get(language, {})

        def translate(text: str) -> str:
            return table.get(text) or text

        return translate

    def missing(self, language: str, msgids: set[str]) -> set[str]:
        """The msgids without a translation (for the test that keeps the catalogue complete)."""
        table = self.messages.get(language, {})
        return {m for m in msgids if not table.get(m)}


@cache
def load_translations() -> Translations:
    """The catalogues, read once per process (the inspector's renderer asks per report)."""
    messages: dict[str, dict[str, str]] = {}
    for language in LANGUAGES:
        if language == DEFAULT_LANGUAGE:
            continue
        path = resources.files("consentgate.web") / "locale" / language / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        messages[language] = {str(m.id): str(m.string) for m in catalog if m.id and m.string and not m.fuzzy}
    return Translations(messages)


def negotiate(accept_language: str | None) -> str:
    """The best of our languages for an ``Accept-Language`` header; English when nothing matches."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    preferred: list[tuple[float, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip()
        quality = 1.0
        for parameter in pieces[1:]:
            name, _, value = parameter.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            preferred.append((-quality + index * 1e-6, tag.replace("_", "-")))
    ordered = [tag for _, tag in sorted(preferred)]
    chosen = Locale.negotiate(ordered, list(LANGUAGES), sep="-") if ordered else None
    return str(chosen.language) if chosen is not None else DEFAULT_LANGUAGE


def format_instant_for(language: str, instant: datetime) -> str:
    """A date and time in the member's language, always in UTC and saying so."""
    return format_datetime(instant, "medium", tzinfo=UTC, locale=language) + " UTC"


def format_date_for(language: str, instant: datetime) -> str:
    return format_date(instant.date(), "long", locale=language)
