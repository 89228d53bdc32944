"""The deterministic songwriter: a sensible `SongSpec` without any model.

Used when the GGUF model is missing, fails, times out or writes junk twice.
The same brief and seed always give the same spec; different seeds vary the
title, tags, key, tempo and lyrics, and a title the station played recently
is skipped. Tempo and metre follow the genre when it is a known one. An auto
song leans to the listeners' taste (`engine.taste_lean`): preferred instruments
and voices first, avoided ones last, tempo and mode within the preferred band.
"""

from __future__ import annotations

import random

from engine.genres import genre_profile
from engine.song_cleanup import DurationRange, clean_caption, clean_lyrics, clean_title
from engine.song_prompt import SongBrief
from engine.spec import KEYS, SongSpec, TasteLean
from engine.taste_lean import lean_bpm_range, lean_choice, lean_keys

_VOICES = ("female vocals", "male vocals", "duet vocals", "choir backing vocals")
_TITLES = ("{t}", "{t} Tonight", "Ballad of {t}", "{t} Again", "Song for {t}", "{t} (Reprise)")
_VERSES = (
    ("I keep thinking of {t}", "Every street still knows my name", "The hours slip away so slow"),
    ("Here we go, {t}", "Lights are low and hearts are loud", "Hold on to the moment now"),
    ("Tell me about {t}", "Whisper it across the night", "Stay until the morning light"),
)
_CHORUSES = (
    ("Oh, {t}", "Carry me home", "We're never alone"),
    ("Sing it out, {t}", "Louder than the rain", "Nothing stays the same"),
    ("{t}, {t}", "All that we know", "Don't let it go"),
)


def template_spec(
    brief: SongBrief, durations: DurationRange, seed: int, recent_titles: tuple[str, ...] = ()
) -> SongSpec:
    """A valid spec for `brief`, chosen by `seed`, avoiding `recent_titles`."""
    rng = random.Random(seed)
    low, high, signature, instruments = genre_profile(brief.genre)
    short_theme = _short_theme(brief.theme)
    recent = {title.casefold() for title in recent_titles}
    offset = rng.randrange(len(_TITLES))
    titles = [_TITLES[(offset + i) % len(_TITLES)].format(t=short_theme) for i in range(6)]
    title = next(
        (t for t in map(clean_title, titles) if t.casefold() not in recent), clean_title(titles[0])
    )
    lean = brief.lean
    picked = lean_choice(instruments, 2, lean, rng)
    voice = "" if brief.instrumental else _voice(lean, rng)
    tags = ", ".join([*picked, voice, brief.theme])
    duration = durations.high
    return SongSpec(
        title=title or "Untitled",
        caption=clean_caption(tags, brief),
        lyrics="" if brief.instrumental else _lyrics(brief, short_theme, rng, duration),
        bpm=rng.randint(*lean_bpm_range(low, high, lean)),
        key=rng.choice(lean_keys(KEYS, lean)),
        time_signature=signature,
        duration=duration,
        language=brief.language,
        seed=seed,
    )


def _voice(lean: TasteLean | None, rng: random.Random) -> str:
    if lean is None:
        return rng.choice(_VOICES)
    return lean_choice(_VOICES, 1, lean, rng)[0]


def _short_theme(theme: str) -> str:
    """The theme as a title: at most six words, each capitalised."""
    words = theme.split()[:6] or ["Radio", "Song"]
    return " ".join(word[:1].upper() + word[1:] for word in words)


def _lyrics(brief: SongBrief, theme: str, rng: random.Random, duration: int) -> str:
    if brief.language != "en":
        # No templates in other languages: the theme (in the listener's words) and vocalise.
        verse, chorus = (theme, "La la la, la la la"), ("Oh oh oh, " + theme, "La la la")
    else:
        verse = tuple(line.format(t=theme.lower()) for line in rng.choice(_VERSES))
        chorus = tuple(line.format(t=theme) for line in rng.choice(_CHORUSES))
    parts = ["[verse]", *verse, "[chorus]", *chorus]
    if duration >= 60:
        parts += ["[verse]", *reversed(verse), "[chorus]", *chorus]
    if duration >= 120:
        parts += ["[bridge]", chorus[-1], verse[-1], "[chorus]", *chorus, "[outro]"]
    return clean_lyrics("\n".join(parts), duration)
