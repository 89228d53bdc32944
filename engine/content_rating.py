"""The lyrics rating: what a `clean` station keeps out of titles, captions and lyrics.

`LYRICS_RATING=clean` (the default, and per station with `/radio_settings`)
means no swearing, sexual content, slurs, drugs or self-harm; `explicit`
means the songwriter writes what the model writes.

Two word lists, both matched on whole words (case-insensitive; for scripts
written without spaces, as a substring):

- profanity, sexual words and slurs: `glin-profanity` (MIT, maintained,
  curated lists for 20 of the bot's 26 languages, no network and no model).
  It was chosen over `better-profanity` (English only, unmaintained since
  2020), `alt-profanity-check` (an English classifier, scikit-learn) and
  `detoxify` (downloads a model). The lyrics' language and English are
  checked, since English words turn up in every language's songs; checking
  every language at once flags ordinary words ("Sie" in German is an insult
  elsewhere). It has no lists for Vietnamese, Indonesian, Ukrainian, Greek,
  Hebrew or Romanian: there only the English list and the next one apply.
- drugs and self-harm, which no profanity list covers ("cocaine",
  "suicide"): `LanguageKit.blocked`, a short hand-written list per language.

The lists are conservative. A few plain words that glin-profanity's lists
mark are allowed (`ALLOWED`): Spanish "negro" is the colour black,
"infierno" is "hell", which the English list allows too, and so on.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache

from glin_profanity import Filter

from engine.song_languages import language_kit

#: The bot's language codes that glin-profanity has a list for.
_GLIN_NAMES = {
    "ar": "arabic", "zh": "chinese", "cs": "czech", "nl": "dutch", "en": "english",
    "fi": "finnish", "fr": "french", "de": "german", "hi": "hindi", "hu": "hungarian",
    "it": "italian", "ja": "japanese", "ko": "korean", "pl": "polish", "pt": "portuguese",
    "ru": "russian", "es": "spanish", "sv": "swedish", "th": "thai", "tr": "turkish",
}  # fmt: skip
#: Scripts written without spaces between words: a blocked word is a substring there.
_UNSPACED = {"zh", "ja", "th"}
#: Ordinary words of a language that the lists mark: Spanish "negro" is black;
#: Romanian "cum" is "how"; in Turkish, glin-profanity splits "bırak" (leave)
#: at the dotless ı and finds "rak".
ALLOWED = {
    "es": {"negro", "negra", "negros", "negras", "infierno", "martillo", "maldito", "maldita"},
    "pt": {"negro", "negra"},
    "it": {"negro", "negra"},
    "ro": {"cum"},
    "tr": {"rak"},
}
_lock = threading.Lock()


@cache
def _profanity_filter(language: str) -> Filter:
    names = sorted({_GLIN_NAMES["en"], _GLIN_NAMES.get(language, "english")})
    return Filter({"languages": names})


@cache
def _topic_pattern(language: str) -> re.Pattern[str]:
    terms = {*language_kit("en").blocked, *language_kit(language).blocked}
    spaced = sorted((t for t in terms if not _unspaced(t)), key=len, reverse=True)
    unspaced = sorted((t for t in terms if _unspaced(t)), key=len, reverse=True)
    alternatives = [rf"(?<!\w){re.escape(t)}(?!\w)" for t in spaced]
    alternatives += [re.escape(t) for t in unspaced]
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _unspaced(term: str) -> bool:
    """A term in a script without spaces (CJK, Thai): matched as a substring."""
    return any(
        "\u0e00" <= ch <= "\u0e7f" or "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"
        for ch in term
    )


def blocked_words(text: str, language: str) -> list[str]:
    """The words of `text` a `clean` station keeps out, for lyrics in `language`."""
    if not text.strip():
        return []
    with _lock:  # the filter keeps caches; one caller at a time
        found = list(_profanity_filter(language).check_profanity(text)["profane_words"])
    found = [word for word in found if word.lower() not in ALLOWED.get(language, ())]
    found += [match.group(0) for match in _topic_pattern(language).finditer(text)]
    return sorted({word.lower() for word in found})


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
