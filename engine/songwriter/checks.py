"""The checks a listener would make of a song, as functions the songwriter's gates
and `bench/songwriter.py` share.

- form (`form_problems`): ACE-Step 1.5 section tags in title case with an
  optional modifier, verse-chorus-verse-chorus at least, at least 6 sung
  lines, at most `MAX_SECTION_LINES` per section and `MAX_LINE` characters
  per line, no junk lines; an instrumental's lyrics are `[Instrumental]`;
- theme (`theme_words`, `shows_theme`): for an English theme, one of its
  content words (stop words left out; "falls" also matches "falling") in
  the title and lyrics;
- copying (`copied_example_line`): a title or line equal to one of the
  worked example's, ignoring case, spaces and punctuation, or at least 75 %
  alike (difflib's ratio: a word or two changed).

Language (`engine.songwriter.language_id`), the rating (`engine.songwriter.content_rating`) and
bpm (`engine.songwriter.genres`) have their own modules.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

from engine.songwriter.language_kits import LanguageKit

MAX_SECTION_LINES = 8
MAX_LINE = 80
MIN_SUNG_LINES = 6
#: Lines at least this alike (difflib ratio) count as copied.
COPY_RATIO = 0.75
INSTRUMENTAL = "[Instrumental]"
SECTION_NAMES = (
    "Intro",
    "Verse",
    "Pre-Chorus",
    "Chorus",
    "Post-Chorus",
    "Hook",
    "Bridge",
    "Breakdown",
    "Build-Up",
    "Drop",
    "Interlude",
    "Instrumental",
    "Solo",
    "Outro",
)
TAG = re.compile(
    r"^\[(?P<name>" + "|".join(re.escape(n) for n in SECTION_NAMES) + r")(?: (?P<number>\d))?"
    r"(?: - (?P<modifier>[a-z][a-z -]{1,30}))?\]$"
)
_JUNK_CHARS = re.compile(r"[{}\[\]<>|\\/@#*_=+~^$%&\"]|https?:|www\.")
_LABEL = re.compile(r"^\W*(lyrics|title|style|tags|caption|request|song|verse|chorus)\b", re.I)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
#: English words that say nothing about what a theme is about.
STOP_WORDS = frozenset(
    (
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "with",
        "without",
        "by",
        "about",
        "into",
        "over",
        "under",
        "after",
        "before",
        "during",
        "through",
        "between",
        "up",
        "down",
        "out",
        "off",
        "again",
        "my",
        "your",
        "his",
        "her",
        "its",
        "our",
        "their",
        "me",
        "you",
        "him",
        "them",
        "us",
        "it",
        "i",
        "we",
        "they",
        "he",
        "she",
        "this",
        "that",
        "these",
        "those",
        "who",
        "whom",
        "which",
        "what",
        "when",
        "where",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "will",
        "would",
        "can",
        "could",
        "should",
        "shall",
        "may",
        "might",
        "must",
        "not",
        "no",
        "so",
        "as",
        "than",
        "too",
        "very",
        "just",
        "some",
        "any",
        "all",
        "each",
        "every",
        "one",
        "two",
        "three",
        "song",
        "songs",
        "something",
        "thing",
        "things",
        "like",
    )
)


def sections(lyrics: str) -> list[tuple[str, list[str]]]:
    """`[(tag, lines), ...]` in order; lines before any tag are under an empty tag."""
    parsed: list[tuple[str, list[str]]] = []
    for raw in lyrics.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            parsed.append((line, []))
        elif parsed:
            parsed[-1][1].append(line)
        else:
            parsed.append(("", [line]))
    return parsed


def is_junk_line(line: str) -> bool:
    """A sung line that is not words: markup, numbers, labels, stray punctuation."""
    text = line.strip()
    letters = sum(ch.isalpha() or unicodedata.category(ch).startswith("M") for ch in text)
    visible = sum(not ch.isspace() for ch in text)
    return (
        letters < 2
        or letters < 0.6 * visible
        or bool(_JUNK_CHARS.search(text))
        or bool(_LABEL.match(text))
        or not (text[0].isalpha() or text[0] in "¡¿«'‘’")
    )


def form_problems(lyrics: str) -> list[str]:
    """What is wrong with the lyrics' form (empty when nothing is)."""
    if lyrics.strip() == INSTRUMENTAL:
        return []
    problems: list[str] = []
    names: list[str] = []
    sung = 0
    for tag, lines in sections(lyrics):
        match = TAG.match(tag)
        if match is None:
            problems.append(f"not an ACE-Step section tag: {tag or '(lines before any tag)'}")
        else:
            names.append(match.group("name"))
        if len(lines) > MAX_SECTION_LINES:
            problems.append(f"{tag} has {len(lines)} lines (at most {MAX_SECTION_LINES})")
        for line in lines:
            if len(line) > MAX_LINE:
                problems.append(f"a line of {len(line)} characters: {line[:40]!r}")
            elif is_junk_line(line):
                problems.append(f"a junk line: {line!r}")
        sung += len(lines)
    if not _has_in_order(names, ("Verse", "Chorus", "Verse", "Chorus")):
        problems.append(f"not verse, chorus, verse, chorus: {' '.join(names) or 'no sections'}")
    if sung < MIN_SUNG_LINES:
        problems.append(f"{sung} sung lines (at least {MIN_SUNG_LINES})")
    return problems


def _has_in_order(names: list[str], wanted: tuple[str, ...]) -> bool:
    found = 0
    for name in names:
        if found < len(wanted) and name == wanted[found]:
            found += 1
    return found == len(wanted)


def sung_text(lyrics: str) -> str:
    """The lyrics without section tags: what a language identifier should read."""
    return "\n".join(line for _, lines in sections(lyrics) for line in lines)


def chorus_text(lyrics: str) -> str:
    return "\n".join(line for tag, lines in sections(lyrics) if tag.startswith("[Chorus") for line in lines)


def theme_words(theme: str) -> set[str]:
    """The content words of an English theme, lower-case."""
    return {w for w in (m.group(0).lower() for m in _WORD.finditer(theme)) if len(w) >= 3 and w not in STOP_WORDS}


def shows_theme(words: set[str], text: str) -> bool:
    """Whether `text` has one of `words`, or a word starting with its stem
    (the word less two letters, at least four: "falls" -> "fall")."""
    found = [m.group(0).lower() for m in _WORD.finditer(text)]
    for word in words:
        stem = word[: max(4, len(word) - 2)] if len(word) > 4 else word
        if any(w == word or (len(stem) >= 4 and w.startswith(stem)) for w in found):
            return True
    return False


def _normalized(text: str) -> str:
    return " ".join(m.group(0).casefold() for m in _WORD.finditer(text))


def copied_example_line(title: str, lyrics: str, kit: LanguageKit) -> str | None:
    """A line (or the title) taken from `kit`'s worked example, if any: the same
    words, or at least `COPY_RATIO` alike (a word or two changed)."""
    example = [_normalized(line) for line in (kit.example.title, *kit.example.lines)]
    for line in (title, *sung_text(lyrics).split("\n")):
        text = _normalized(line)
        if text and any(
            text == other or difflib.SequenceMatcher(None, text, other).ratio() >= COPY_RATIO for other in example
        ):
            return line
    return None
