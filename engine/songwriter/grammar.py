"""The GBNF grammars (llama.cpp syntax) that give a song its form while it is written.

A song is written in steps, each continuing the text of the last:

1. the title: one line, 2-36 characters, after the space that follows
   `Title:` (a word's token carries its space, so the prompt ends without
   one) (`title_grammar`);
2. after the songwriter's `[Verse 1]` tag (`engine.songwriter.song_form`), its
   `lines` lines (`lines_grammar`);
3. after the `[Chorus]` tag and the title, which the songwriter writes as the
   chorus's first words (the hook), the rest of that line and the chorus's
   other lines (`hook_grammar`);
4. after `[Verse 2]`, its lines, and for long songs, after `[Bridge]`, two more.

The grammar fixes the number of lines in each section (repetition counts) and
each line's length.

Text is written in the language's script (`SCRIPTS`): letters of that
script, spaces and plain punctuation, a title starting with a capital
letter where the script has them, a line starting with a letter. So digits,
brackets, markup, slashes, symbols, emoji and letters of other scripts
cannot be written at all: neither the junk lines small models write
("4/5 (012)", `". Lyrics`) nor a Latin title on a Greek song.
"""

from __future__ import annotations

from typing import NamedTuple

TITLE_CHARS = (2, 36)
_PUNCTUATION = r" ,.!?'\-\u2019"


class Script(NamedTuple):
    """Character classes (the inside of GBNF `[...]`) of a writing system."""

    letters: str
    title_start: str  # a title's first character
    line_start: str  # a line's first character
    punctuation: str = _PUNCTUATION
    spaced: bool = True  # words separated by spaces


_LATIN_LETTERS = r"a-zA-Z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_LATIN = Script(
    _LATIN_LETTERS,
    r"A-Z\u00c0-\u00d6\u00d8-\u00de\u0100-\u024f\u1e00-\u1eff\u00a1\u00bf",
    _LATIN_LETTERS + r"\u00a1\u00bf",
    _PUNCTUATION + r"\u00a1\u00bf\u00ab\u00bb",
)
_CYRILLIC = Script(r"\u0400-\u04ff", r"\u0400-\u042f", r"\u0400-\u04ff")
_GREEK = Script(r"\u0370-\u03ff\u1f00-\u1fff", r"\u0386-\u03ab", r"\u0370-\u03ff\u1f00-\u1fff")
_HEBREW = Script(r"\u0590-\u05ff", r"\u05d0-\u05ea", r"\u05d0-\u05ea")
_ARABIC = Script(
    r"\u0621-\u065f\u0670-\u06d3",
    r"\u0621-\u064a",
    r"\u0621-\u064a",
    _PUNCTUATION + r"\u060c\u061f",
)
_DEVANAGARI = Script(
    r"\u0900-\u097f",
    r"\u0904-\u0939\u0958-\u0961",
    r"\u0904-\u0939\u0958-\u0961",
    _PUNCTUATION + r"\u0964",
)
_THAI = Script(
    r"\u0e01-\u0e4e",
    r"\u0e01-\u0e2e\u0e40-\u0e44",
    r"\u0e01-\u0e2e\u0e40-\u0e44",
    " ",
    spaced=False,
)
_HAN = Script(r"\u4e00-\u9fff", r"\u4e00-\u9fff", r"\u4e00-\u9fff", r"\u3001\uff0c\uff01\uff1f ", spaced=False)
_KANA_HAN = r"\u3041-\u3096\u30a1-\u30fa\u30fc\u4e00-\u9fff"
_JAPANESE = Script(_KANA_HAN, _KANA_HAN, _KANA_HAN, r"\u3001\uff01\uff1f ", spaced=False)
_HANGUL = Script(r"\uac00-\ud7a3", r"\uac00-\ud7a3", r"\uac00-\ud7a3", r" ,.!?")
#: The script each vocal language is written in (Latin for the rest).
SCRIPTS = {
    "ru": _CYRILLIC,
    "uk": _CYRILLIC,
    "el": _GREEK,
    "he": _HEBREW,
    "ar": _ARABIC,
    "hi": _DEVANAGARI,
    "th": _THAI,
    "zh": _HAN,
    "ja": _JAPANESE,
    "ko": _HANGUL,
}


def script_of(language: str) -> Script:
    return SCRIPTS.get(language, _LATIN)


def _rules(script: Script, line_chars: tuple[int, int]) -> list[str]:
    low, high = line_chars
    return [
        f"title-start ::= [{script.title_start}]",
        f"start ::= [{script.line_start}]",
        f"char ::= [{script.letters}{script.punctuation}]",
        f'line ::= start char{{{max(0, low - 1)},{high - 1}}} "\\n"',
    ]


def title_grammar(language: str) -> str:
    """One title line (shorter for scripts without spaces)."""
    script = script_of(language)
    low, high = TITLE_CHARS if script.spaced else (2, 16)
    return "\n".join(
        [
            f'root ::= " " title-start char{{{low - 1},{high - 1}}} "\\n"',
            *_rules(script, (low, high)),
        ]
    )


def lines_grammar(language: str, lines: int, line_chars: tuple[int, int]) -> str:
    """A section's `lines` lines."""
    return "\n".join([f"root ::= line{{{lines}}}", *_rules(script_of(language), line_chars)])


def hook_grammar(language: str, lines: int, line_chars: tuple[int, int], hook_chars: int) -> str:
    """The rest of the hook line (`hook_chars` long so far) and the chorus's other lines."""
    room = max(0, line_chars[1] - hook_chars)
    return "\n".join([f'root ::= char{{0,{room}}} "\\n" line{{{lines - 1}}}', *_rules(script_of(language), line_chars)])
