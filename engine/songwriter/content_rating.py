"""The lyrics rating: what a `clean` station keeps out of titles, captions and lyrics.

`LYRICS_RATING=clean` (the default, and per station with `/radio_settings`)
means no swearing, sexual content, slurs, drugs or self-harm; `explicit`
means the songwriter writes what the model writes.

Two word lists, both matched on whole words, case-insensitive (in scripts
written without spaces, as a substring):

- profanity, sexual words and slurs: the curated lists of `glin-profanity`
  (MIT, maintained, lists for 20 of the bot's 26 languages, no network and
  no model). It was chosen over `better-profanity` (English only,
  unmaintained since 2020), `alt-profanity-check` (an English classifier on
  scikit-learn) and `detoxify` (downloads a model). Only its lists are used:
  its own matcher splits words at letters such as Turkish ı and ş and then
  finds fragments ("akşama" -> "ak"). The lyrics' language and English are
  checked, since English words turn up in every language's songs; checking
  every language at once flags ordinary words ("Sie" in German is an insult
  elsewhere). It has no list for Vietnamese, Indonesian, Ukrainian, Greek,
  Hebrew or Romanian: there only the English list and the next one apply.
- drugs and self-harm, which no profanity list covers ("cocaine",
  "suicide"): `LanguageKit.blocked`, a short hand-written list per language.

The lists are conservative. A few plain words that the lists mark are
allowed (`ALLOWED`): Spanish "negro" is the colour black, "infierno" is
"hell", which the English list allows too, and so on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from glin_profanity.data.dictionary import dictionary

from engine.songwriter.language_kits import language_kit

#: The bot's language codes that glin-profanity has a list for.
_GLIN_NAMES = {
    "ar": "arabic",
    "zh": "chinese",
    "cs": "czech",
    "nl": "dutch",
    "en": "english",
    "fi": "finnish",
    "fr": "french",
    "de": "german",
    "hi": "hindi",
    "hu": "hungarian",
    "it": "italian",
    "ja": "japanese",
    "ko": "korean",
    "pl": "polish",
    "pt": "portuguese",
    "ru": "russian",
    "es": "spanish",
    "sv": "swedish",
    "th": "thai",
    "tr": "turkish",
}
#: Ordinary words of a language that the lists mark: Spanish "negro" is black,
#: Romanian "cum" is "how", Dutch "paal" is a pole.
ALLOWED = {
    "es": {"negro", "negra", "negros", "negras", "infierno", "martillo", "maldito", "maldita"},
    "pt": {"negro", "negra"},
    "it": {"negro", "negra"},
    "ro": {"cum"},
    "nl": {"paal"},
}


@cache
def _pattern(language: str) -> re.Pattern[str]:
    """One regular expression for every blocked word of `language` (and English)."""
    terms = {*language_kit("en").blocked, *language_kit(language).blocked}
    for name in {_GLIN_NAMES["en"], _GLIN_NAMES.get(language, "english")}:
        terms.update(word.lower() for word in dictionary.get_words(name))
    terms -= ALLOWED.get(language, set())
    ordered = sorted((t for t in terms if t.strip()), key=len, reverse=True)
    return re.compile(
        "|".join(re.escape(t) if _unspaced(t) else rf"(?<!\w){re.escape(t)}(?!\w)" for t in ordered),
        re.IGNORECASE,
    )


def _unspaced(term: str) -> bool:
    """A term in Thai, Chinese, Japanese or Korean: matched as a substring (the
    first three have no spaces, and Korean joins particles to its words)."""
    return any("\u0e00" <= ch <= "\u0e7f" or "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" for ch in term)


def blocked_words(text: str, language: str) -> list[str]:
    """The words of `text` a `clean` station keeps out, for lyrics in `language`."""
    found = {match.group(0).lower() for match in _pattern(language).finditer(text)}
    return sorted(found)


@dataclass(frozen=True)
class ThemeCheck:
    """A listener's theme as a station with `rating` may use it."""

    theme: str
    removed: tuple[str, ...] = ()

    @property
    def cleaned(self) -> bool:
        return bool(self.removed)


def check_theme(theme: str, language: str, rating: str) -> ThemeCheck:
    """Under `clean`, the theme without its blocked words (and what was removed)."""
    if rating != "clean":
        return ThemeCheck(theme)
    words = blocked_words(theme, language)
    if not words:
        return ThemeCheck(theme)
    pattern = re.compile(
        "|".join(
            re.escape(w) if _unspaced(w) else rf"(?<!\w){re.escape(w)}(?!\w)"
            for w in sorted(words, key=len, reverse=True)
        ),
        re.IGNORECASE,
    )
    cleaned = " ".join(pattern.sub(" ", theme).split())
    return ThemeCheck(cleaned, tuple(words))
