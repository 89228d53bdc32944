"""Which language a text is in, with py3langid (it ships its own model: no download).

py3langid is the maintained fork of langid.py: a naive Bayes classifier over
byte n-grams, trained on about 100 languages, that answers in well under a
millisecond for a song. Two identifiers are kept, built once on first use:

- `vocal`: restricted to the languages the bot offers (`engine.spec.LANGUAGES`),
  what the songwriter's language gate asks ("is this French rather than any
  other language a station could want?");
- `any`: every language the model knows, what the benchmark asks, so that it
  also catches lyrics that drifted into a language no station offers.
"""

from __future__ import annotations

import threading
from typing import Literal

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from engine.spec import LANGUAGES

_lock = threading.Lock()
_identifiers: dict[str, LanguageIdentifier] = {}


def _identifier(among: str) -> LanguageIdentifier:
    with _lock:
        if among not in _identifiers:
            identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            if among == "vocal":
                identifier.set_languages(list(LANGUAGES))
            _identifiers[among] = identifier
        return _identifiers[among]


def likelier(text: str, first: str, second: str) -> str:
    """Which of two vocal languages `text` is more likely in (for short texts,
    such as a title, where the single best guess is unreliable)."""
    scores = dict(_identifier("vocal").rank(text))
    return first if scores.get(first, 0.0) >= scores.get(second, 0.0) else second


def identify(text: str, among: Literal["vocal", "any"] = "vocal") -> tuple[str, float]:
    """The language code of `text` and the identifier's confidence (0-1).

    Thread-safe: classifying does not change the identifier.
    """
    code, confidence = _identifier(among).classify(text)
    return str(code), float(confidence)
