"""The gates a written song must pass before the radio sings it.

Each returns why a spec fails, or None. A failed gate sends the songwriter
back to the model with another seed; after the last attempt the template
songwriter writes the song. In order:

- form: `engine.songwriter.checks.form_problems`;
- language: py3langid (`engine.songwriter.language_id`) reads the title and the sung
  lines and must name the station's language, and the title alone must not
  read likelier as English (the pull of an English theme);
- rating: under `clean`, no blocked word (`engine.songwriter.content_rating`) in the
  title, caption or lyrics;
- copying: no title or line of the worked example;
- theme: an English theme's words in the title (and so in the chorus, which
  opens with the title);
- repeats: a title too close to one the station played lately.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from engine.songwriter.checks import (
    copied_example_line,
    form_problems,
    shows_theme,
    sung_text,
    theme_words,
)
from engine.songwriter.content_rating import blocked_words
from engine.songwriter.language_id import identify, likelier
from engine.songwriter.prompt import SongBrief
from engine.spec import SongSpec

#: Titles at least this similar to a recent one (difflib ratio) count as repeats.
#: Captions do not: they are built from the genre's few words and often agree.
NEAR_DUPLICATE = 0.85


def first_problem(spec: SongSpec, brief: SongBrief, recent: Sequence[SongSpec]) -> str | None:
    """Why `spec` cannot be sung for `brief`, or None."""
    for gate in (_form, _language, _rating, _copying, _theme):
        problem = gate(spec, brief)
        if problem:
            return problem
    repeat = repeats(spec, recent)
    return f"too close to the recent song {repeat!r}" if repeat else None


def _form(spec: SongSpec, brief: SongBrief) -> str | None:
    problems = form_problems(spec.lyrics)
    return f"form: {problems[0]}" if problems else None


def _language(spec: SongSpec, brief: SongBrief) -> str | None:
    if spec.instrumental:
        return None
    found, confidence = identify(f"{spec.title}\n{sung_text(spec.lyrics)}")
    if found != brief.language:
        return f"language: written in {found!r} ({confidence:.2f}), not {brief.language!r}"
    if brief.language != "en" and likelier(spec.title, brief.language, "en") == "en":
        return f"language: the title {spec.title!r} is English"
    return None


def _rating(spec: SongSpec, brief: SongBrief) -> str | None:
    if brief.rating != "clean":
        return None
    words = blocked_words(f"{spec.title}\n{spec.caption}\n{spec.lyrics}", brief.language)
    return f"rating clean: blocked words {', '.join(words)}" if words else None


def _copying(spec: SongSpec, brief: SongBrief) -> str | None:
    line = copied_example_line(spec.title, spec.lyrics, brief.kit)
    return f"copied the worked example's line {line!r}" if line else None


def _theme(spec: SongSpec, brief: SongBrief) -> str | None:
    if brief.language != "en" or not brief.theme_in_language:
        return None
    words = theme_words(brief.theme)
    if words and not shows_theme(words, spec.title):
        return f"theme: the title {spec.title!r} has none of {sorted(words)}"
    return None


def repeats(spec: SongSpec, recent: Sequence[SongSpec]) -> str | None:
    """The title of a recent song that `spec` nearly repeats, if any."""
    for old in recent:
        title, old_title = spec.title.casefold(), old.title.casefold()
        if difflib.SequenceMatcher(None, title, old_title).ratio() >= NEAR_DUPLICATE:
            return old.title
    return None
