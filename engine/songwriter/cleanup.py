"""Turn what the model wrote into a valid, safe `SongSpec`, or say why not.

The grammar (`engine.songwriter.grammar`) already gave the lyrics their form; here
it is checked again, since text is untrusted and a chat model's template may
differ:

- every line goes through `sanitize_text`; a line the grammar cut at its
  length limit loses its last, unfinished word; junk lines
  (`engine.songwriter.checks.is_junk_line`) are dropped, and a section left empty
  rejects the answer;
- section tags keep ACE-Step 1.5's title case and their modifier
  (`[Chorus - anthemic]`); unknown modifiers are dropped, not the section;
- the song is assembled: verse, chorus, verse, chorus again (a chorus
  repeats), for long songs bridge and a last chorus, and an outro;
- the caption is built from ACE-Step's own kind of words (`build_caption`):
  the station's genre, two of the genre's instruments, a vocal type, a mood
  and a tempo feel, so it names the genre and no other, and has no years, ids
  or stray punctuation;
- bpm, key and metre come from the genre's table (`engine.songwriter.genres`), the
  tempo leaning to the mood; the duration is clamped to the allowed range;
- an auto song leans to the listeners' taste (`engine.songwriter.taste_lean`): preferred
  instruments and voices first, avoided tags out, tempo and mode within the
  preferred band, never outside the genre's range or without the station's words;
- an instrumental gets `[Instrumental]` and language `unknown`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from engine.errors import SongwriterError
from engine.songwriter.checks import TAG, is_junk_line, sections
from engine.songwriter.genres import genre_profile
from engine.songwriter.prompt import SongBrief
from engine.songwriter.song_form import MODIFIERS
from engine.songwriter.taste_lean import lean_bpm_range, lean_choice, lean_keys, lean_tags
from engine.spec import (
    INSTRUMENTAL_LANGUAGE,
    INSTRUMENTAL_LYRICS,
    MAX_CAPTION,
    MAX_LYRICS,
    MAX_TITLE,
    SongSpec,
)
from engine.text_safety import sanitize_text

VOICES = ("female vocals", "male vocals", "soft female vocals", "warm male vocals", "duet vocals")
_SLOW = ("calm", "slow", "sad", "melanchol", "dream", "tender", "chill", "relax", "sleep", "soft")
_FAST = ("energ", "fast", "happy", "driv", "party", "upbeat", "joy", "festive", "aggress", "wild")
_MINOR = ("sad", "melanchol", "dark", "moody", "nostalg", "haunt", "bitter", "brood")
_MAJOR = ("happy", "bright", "joy", "cheer", "sunny", "uplift", "playful", "festive")


class JunkOutputError(SongwriterError, ValueError):
    """The model's answer cannot be made into a song; the message says why."""


@dataclass(frozen=True)
class DurationRange:
    """The lengths a spec may have, in seconds. Equal ends fix the length."""

    low: int
    high: int

    def clamp(self, value: int) -> int:
        return max(self.low, min(self.high, value))


def as_int(value: object) -> int | None:
    """An int from a number; None for anything else (text, bool, NaN, infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def clean_title(text: str, cut_at: int | None = None) -> str:
    """One safe line, without quotes, brackets or path separators, at most 80
    characters. A title that reached `cut_at` characters (the grammar's limit)
    loses its unfinished last word."""
    text = sanitize_text(text).replace("/", "-").replace("\\", "-")
    if cut_at is not None and len(text) >= cut_at and " " in text:
        text = text.rsplit(" ", 1)[0]
    text = text.translate(str.maketrans("", "", '[]{}<>|"`*#_'))
    return sanitize_text(text.strip(" '-.,:;!?"), MAX_TITLE)


def clean_line(line: str, limit: int) -> str:
    """A sung line made safe, starting with a capital; one the grammar cut at
    `limit` characters loses its unfinished last word. Empty when nothing sung
    is left."""
    text = sanitize_text(line)
    if len(line.strip()) >= limit and " " in text:
        text = text.rsplit(" ", 1)[0]
    text = text.strip(" ,;:-")
    if not text or is_junk_line(text):
        return ""
    return text[0].upper() + text[1:]  # a line starts with a capital, where there are any


def clean_tag(tag: str) -> str | None:
    """`[Chorus - anthemic]` as it is, `[Chorus - shouty]` -> `[Chorus]`; None for
    anything that is not a section tag."""
    match = TAG.match(tag.strip())
    if match is None:
        return None
    name = match.group("name") + (f" {match.group('number')}" if match.group("number") else "")
    modifier = match.group("modifier")
    if modifier and modifier in MODIFIERS.get(match.group("name"), ()):
        return f"[{name} - {modifier}]"
    return f"[{name}]"


def assemble_lyrics(body: str, brief: SongBrief) -> str:
    """The model's sections (verse 1, chorus, verse 2, maybe a bridge) as a whole
    song: the chorus comes back after the second verse and after the bridge."""
    limit = brief.kit.line_chars[1]
    parts: dict[str, tuple[str, list[str]]] = {}
    for raw_tag, raw_lines in sections(body):
        tag = clean_tag(raw_tag)
        if tag is None:
            raise JunkOutputError(f"not a section tag: {raw_tag[:40]!r}")
        lines = [line for line in (clean_line(r, limit) for r in raw_lines) if line]
        if not lines:
            raise JunkOutputError(f"{tag} has no usable line")
        parts[tag.split(" - ")[0].strip("[]")] = (tag, lines)
    needed = ("Verse 1", "Chorus", "Verse 2")
    missing = [name for name in needed if name not in parts]
    if missing:
        raise JunkOutputError(f"missing {', '.join(missing)}")
    order = ["Verse 1", "Chorus", "Verse 2", "Chorus"]
    if "Bridge" in parts:
        order += ["Bridge", "Chorus"]
    song: list[str] = []
    for name in order:
        tag, lines = parts[name]
        song += [tag, *lines]
    if brief.duration >= 60:
        song.append("[Outro - fade out]")
    text = "\n".join(song)
    if len(text) > MAX_LYRICS:
        raise JunkOutputError("the lyrics are too long")
    return text


def choose_music(brief: SongBrief, seed: int) -> tuple[int, str, str]:
    """bpm, key and time signature for the brief's genre, leaning to its mood."""
    rng = random.Random(seed)
    profile = genre_profile(brief.genre)
    low, high = profile.low_bpm, profile.high_bpm
    mood = brief.mood.lower()
    middle = (low + high) // 2
    if any(word in mood for word in _SLOW):
        high = middle
    elif any(word in mood for word in _FAST):
        low = middle
    keys = list(profile.keys)
    if any(word in mood for word in _MINOR):
        keys = [k for k in keys if k.endswith("minor")] or keys
    elif any(word in mood for word in _MAJOR):
        keys = [k for k in keys if k.endswith("major")] or keys
    low, high = lean_bpm_range(low, high, brief.lean)
    keys = lean_keys(keys, brief.lean)
    metres = profile.metres
    metre = metres[0] if len(metres) == 1 or rng.random() < 0.75 else rng.choice(metres[1:])
    return rng.randint(low, high), rng.choice(keys), metre


def tempo_feel(bpm: int) -> str:
    if bpm < 80:
        return "slow tempo"
    if bpm < 110:
        return "mid-tempo"
    return "upbeat" if bpm < 135 else "fast tempo"


def build_caption(brief: SongBrief, bpm: int, seed: int) -> str:
    """Comma-separated tags ACE-Step knows: genre, two instruments, voice, mood, feel."""
    rng = random.Random(seed ^ 0x5EED)
    profile = genre_profile(brief.genre)
    lean = brief.lean
    if lean is not None and brief.instrumental:  # no liked voice in an instrumental
        lean = lean.model_copy(update={"prefer": ()})
    instruments = lean_choice(profile.instruments, 2, lean, rng)
    if brief.instrumental:
        voice = "instrumental"
    else:
        voice = rng.choice(VOICES) if lean is None else lean_choice(VOICES, 1, lean, rng)[0]
    mood = brief.mood or rng.choice(profile.moods)
    station = [brief.genre, mood]
    wanted = lean_tags([brief.genre, *instruments, voice, mood, tempo_feel(bpm)], lean, station)
    tags: list[str] = []
    for tag in wanted:
        tag = sanitize_text(tag).strip(" ,.;:-").lower()
        if tag and tag not in tags and len(", ".join([*tags, tag])) <= MAX_CAPTION:
            tags.append(tag)
    return ", ".join(tags)


def make_spec(title: str, lyrics: str, brief: SongBrief, durations: DurationRange, seed: int) -> SongSpec:
    """A spec from a title and assembled lyrics, the rest from the brief and seed."""
    title = clean_title(title)
    if not title:
        raise JunkOutputError("the title is empty")
    bpm, key, metre = choose_music(brief, seed)
    return SongSpec(
        title=title,
        caption=build_caption(brief, bpm, seed),
        lyrics=INSTRUMENTAL_LYRICS if brief.instrumental else lyrics,
        bpm=bpm,
        key=key,
        time_signature=metre,
        duration=durations.clamp(brief.duration),
        language=INSTRUMENTAL_LANGUAGE if brief.instrumental else brief.language,
        seed=seed,
    )
