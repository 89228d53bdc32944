"""The deterministic songwriter: a sensible `SongSpec` without any model.

Used when the GGUF model is missing, fails, times out, or every draft failed a
gate. It writes in the station's language, from that language's hand-written
template lines (`engine/songwriter/languages/<code>.json`), in the same form the
model writes: `[Verse 1]`, a `[Chorus]` that opens with the title,
`[Verse 2]`, the chorus again. The title is the listener's theme when it is
in the station's language (so the theme is in the title and the chorus), or
one of the language's template titles. Tempo, key, metre and caption come
from the genre's table, as for the model's songs. The same brief and seed
always give the same spec; a title the station played recently is skipped.
"""

from __future__ import annotations

import random

from engine.songwriter.cleanup import DurationRange, assemble_lyrics, clean_title, make_spec
from engine.songwriter.prompt import SongBrief
from engine.spec import SongSpec

#: Longest theme used as a title, in words (scripts without spaces: characters).
TITLE_WORDS, TITLE_CHARS = 6, 16


def template_spec(
    brief: SongBrief, durations: DurationRange, seed: int, recent_titles: tuple[str, ...] = ()
) -> SongSpec:
    """A valid spec for `brief`, chosen by `seed`, avoiding `recent_titles`."""
    rng = random.Random(seed)
    lines = brief.kit.template
    recent = {title.casefold() for title in recent_titles}
    candidates = list(lines.titles)
    rng.shuffle(candidates)
    if brief.theme and brief.theme_in_language:
        candidates.insert(0, _theme_title(brief.theme, brief.language))
    title = next(
        (t for t in map(clean_title, candidates) if t and t.casefold() not in recent),
        clean_title(candidates[0]) or "Radio",
    )
    count = brief.lines_per_section
    chorus = [title, *lines.chorus][:count]
    body = "\n".join(
        [
            "[Verse 1]",
            *lines.verse1[:count],
            "[Chorus]",
            *chorus,
            "[Verse 2]",
            *lines.verse2[:count],
        ]
        + (["[Bridge]", *lines.chorus[-2:]] if brief.bridge else [])
    )
    return make_spec(title, assemble_lyrics(body, brief), brief, durations, seed)


def _theme_title(theme: str, language: str) -> str:
    """The theme as a title: a few words, the first capitalised (each in English)."""
    if " " not in theme.strip():
        return theme[:TITLE_CHARS]
    words = theme.split()[:TITLE_WORDS]
    if language == "en":
        return " ".join(word[:1].upper() + word[1:] for word in words)
    return " ".join(words)[:1].upper() + " ".join(words)[1:]
