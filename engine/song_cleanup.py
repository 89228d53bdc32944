"""Turn a model's raw answer into a valid, safe, clamped `SongSpec`, or say why not.

The grammar guarantees the JSON's shape but not its sense (a bpm of 3e15 has
been seen), and the text is untrusted. Every field is therefore cleaned here:

- text: `sanitize_text` (no mentions, links, control or invisible characters),
  one line for title and caption, lengths capped;
- caption: comma-separated tags, de-duplicated, led by the station's genre and
  mood, leaning to the listeners' taste (`engine.taste_lean`: avoided tags out,
  preferred ones in), and filled out with the genre's instruments when it has
  under 4 tags;
- bpm clamped to 40-220 (and into the taste's band, when it has one); key and
  time signature checked against the 24 keys and the 4 metres, the metre fitted
  to the genre (`fit_metre`); duration clamped to the range the songwriter allows;
- lyrics: section tags normalised to lower-case names ACE-Step knows
  (`[verse]`, `[chorus]`, ...) on their own lines, unknown tags dropped, long
  prose lines split, the number of sung lines capped by the song's length;
- language: always the station's.

`JunkOutputError` is raised for answers that cannot be saved: not JSON, no
title, no lyric line in a song with vocals, or a worked example copied back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from engine.genres import genre_profile
from engine.song_prompt import SongBrief, example_songs
from engine.spec import (
    KEYS,
    MAX_BPM,
    MAX_CAPTION,
    MAX_LYRICS,
    MAX_TITLE,
    MIN_BPM,
    TIME_SIGNATURES,
    SongSpec,
)
from engine.taste_lean import lean_bpm, lean_tags
from engine.text_safety import sanitize_text

#: Section names kept in lyrics, and the spellings mapped onto them.
SECTION_ALIASES = {
    "intro": "intro",
    "verse": "verse",
    "pre-chorus": "pre-chorus",
    "prechorus": "pre-chorus",
    "pre chorus": "pre-chorus",
    "chorus": "chorus",
    "refrain": "chorus",
    "post-chorus": "post-chorus",
    "hook": "hook",
    "bridge": "bridge",
    "middle eight": "bridge",
    "breakdown": "breakdown",
    "build-up": "build-up",
    "buildup": "build-up",
    "build up": "build-up",
    "drop": "drop",
    "interlude": "interlude",
    "instrumental": "instrumental",
    "inst": "instrumental",
    "instrumental break": "instrumental",
    "solo": "solo",
    "guitar solo": "solo",
    "outro": "outro",
    "ending": "outro",
    "coda": "outro",
}
#: Sections that may stand without sung lines after them.
WORDLESS_SECTIONS = {"intro", "interlude", "instrumental", "solo", "drop", "breakdown", "outro"}
#: Captions with fewer tags get the genre's instruments added.
MIN_TAGS = 4
#: Longest lyric line; longer prose is split at punctuation.
MAX_LINE = 80
#: Seconds of music per sung line, for capping the lyrics by the song's length.
SECONDS_PER_LINE = 3

_TAG_LINE = re.compile(r"^\[([^\[\]]{1,40})\]\s*(.*)$")
_INLINE_TAG = re.compile(r"\[[^\[\]]{0,40}\]")
_LETTER = re.compile(r"\w", re.UNICODE)
#: A base model may run on into the next few-shot example: everything from there goes.
_PROMPT_ECHO = re.compile(r"(?:^|\n)\s*(?:Request|Song)\s*:")
_SPLIT_AT = re.compile(r"(?<=[,.;:!?])\s+")


class JunkOutputError(ValueError):
    """The model's answer cannot be made into a song; the message says why."""


@dataclass(frozen=True)
class DurationRange:
    """The lengths a spec may have, in seconds. Equal ends fix the length."""

    low: int
    high: int

    def clamp(self, value: int) -> int:
        return max(self.low, min(self.high, value))


def parse_answer(text: str) -> dict:
    """The JSON object in `text`, completing an answer cut off inside the lyrics."""
    text = text.strip()
    if text.endswith("\\"):  # cut inside an escape sequence
        text = text[:-1]
    for suffix in ("", '"}', "}"):
        candidate = text + suffix
        try:
            value = json.loads(candidate, strict=False)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise JunkOutputError(f"not a JSON object: {text[:80]!r}")


def spec_from_answer(text: str, brief: SongBrief, durations: DurationRange, seed: int) -> SongSpec:
    """Parse, check, clean and clamp one answer into a `SongSpec`."""
    data = parse_answer(text)
    title = clean_title(str(data.get("title", "")))
    if not title:
        raise JunkOutputError("the title is empty")
    caption = clean_caption(str(data.get("caption", "")), brief)
    copied = next(
        (ex for ex in example_songs() if title == ex["title"] or caption == ex["caption"]), None
    )
    if copied is not None:
        raise JunkOutputError(f"copied the worked example {copied['title']!r}")
    proposed, bpm = as_int(data.get("duration")), as_int(data.get("bpm"))
    duration = durations.clamp(durations.high if proposed is None else proposed)
    lyrics = "" if brief.instrumental else clean_lyrics(str(data.get("lyrics", "")), duration)
    if not brief.instrumental and sung_lines(lyrics) < 2:
        raise JunkOutputError("fewer than two lyric lines")
    key = data.get("key")
    signature = data.get("time_signature")
    if key not in KEYS or signature not in TIME_SIGNATURES:
        raise JunkOutputError(f"unknown key {key!r} or time signature {signature!r}")
    signature = fit_metre(signature, brief.genre)
    return SongSpec(
        title=title,
        caption=caption,
        lyrics=lyrics,
        bpm=lean_bpm(max(MIN_BPM, min(MAX_BPM, 100 if bpm is None else bpm)), brief.lean),
        key=key,
        time_signature=signature,
        duration=duration,
        language=brief.language,
        seed=seed,
    )


def fit_metre(signature: str, genre: str) -> str:
    """A genre with its own metre (waltz, shanty, polka) keeps it; elsewhere 2/4,
    a march or polka beat that small models copy from examples, becomes 4/4."""
    typical = genre_profile(genre).time_signature
    if typical != "4/4":
        return typical
    return "4/4" if signature == "2/4" else signature


def as_int(value: object) -> int | None:
    """An int from a number; None for anything else (text, bool, NaN, infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def clean_title(text: str) -> str:
    """One safe line, without quotes around it or path separators, at most 80 characters."""
    text = sanitize_text(text).replace("/", "-").replace("\\", "-")
    text = _INLINE_TAG.sub("", text).strip(" \"'`*#-_.,:;")
    return sanitize_text(text, MAX_TITLE)


def clean_caption(text: str, brief: SongBrief) -> str:
    """Comma-separated tags, de-duplicated, with the station's genre and mood."""
    tags: list[str] = []
    seen: set[str] = set()
    station = [brief.genre, brief.mood]
    lean = brief.lean
    if lean is not None and brief.instrumental:  # no liked voice in an instrumental
        lean = lean.model_copy(update={"prefer": ()})
    wanted = lean_tags([*station, *sanitize_text(text).split(",")], lean, keep=station)
    if brief.instrumental:
        wanted.append("instrumental")
    for raw in wanted:
        _add_tag(tags, seen, raw)
    if len(tags) < MIN_TAGS:  # too thin to steer the music model: add the genre's sound
        for instrument in genre_profile(brief.genre).instruments:
            _add_tag(tags, seen, instrument)
    return ", ".join(tags)


def _add_tag(tags: list[str], seen: set[str], raw: str) -> None:
    tag = _INLINE_TAG.sub("", raw).strip(" \"'`*#-_.:;")
    if tag and tag.lower() not in seen and len(", ".join([*tags, tag])) <= MAX_CAPTION:
        seen.add(tag.lower())
        tags.append(tag)


def clean_lyrics(text: str, duration: int) -> str:
    """Lyrics with normalised section tags, at most one sung line per 3 s of song."""
    text = _PROMPT_ECHO.split(sanitize_text(text, multiline=True))[0]
    lines: list[str] = []
    for raw in text.split("\n"):
        match = _TAG_LINE.match(raw.strip())
        if match:
            section = section_name(match.group(1))
            if section:
                lines.append(f"[{section}]")
            raw = match.group(2)
        for piece in _split_long(_INLINE_TAG.sub(" ", raw)):
            piece = sanitize_text(piece).strip(" \"'`*#:;,-")
            if _LETTER.search(piece):
                lines.append(piece)
    return _structure(lines, max(4, duration // SECONDS_PER_LINE))


def section_name(tag: str) -> str | None:
    """`'Verse 2'` -> `'verse'`, `'PRE-CHORUS'` -> `'pre-chorus'`; None if unknown."""
    name = re.sub(r"[\d:#.()]+", " ", tag.lower()).replace("_", " ")
    name = " ".join(name.split())
    return SECTION_ALIASES.get(name)


def _split_long(line: str) -> list[str]:
    line = " ".join(line.split())
    if len(line) <= MAX_LINE:
        return [line]
    pieces: list[str] = []
    for part in _SPLIT_AT.split(line):
        while len(part) > MAX_LINE:
            cut = part.rfind(" ", 0, MAX_LINE)
            cut = cut if cut > 0 else MAX_LINE
            pieces.append(part[:cut])
            part = part[cut:].strip()
        if pieces and len(pieces[-1]) + len(part) + 1 <= MAX_LINE // 2:
            pieces[-1] += " " + part
        elif part:
            pieces.append(part)
    return pieces


def _structure(lines: list[str], max_sung: int) -> str:
    """Drop empty sections and repeated tags, open with a section, cap sung lines."""
    out: list[str] = []
    sung = 0
    for line in lines:
        if line.startswith("["):
            if out and out[-1].startswith("[") and out[-1][1:-1] not in WORDLESS_SECTIONS:
                out.pop()  # the previous section had no lines
            if not out or out[-1] != line:
                out.append(line)
            continue
        if sung >= max_sung:
            break
        if not out:
            out.append("[verse]")
        out.append(line)
        sung += 1
    while out and out[-1].startswith("[") and out[-1][1:-1] not in WORDLESS_SECTIONS:
        out.pop()
    text = "\n".join(out)
    while len(text) > MAX_LYRICS:
        text = text[: text.rfind("\n")]
    return text


def sung_lines(lyrics: str) -> int:
    """How many lines of `lyrics` are sung (not section tags)."""
    return sum(1 for line in lyrics.split("\n") if line.strip() and not line.startswith("["))
