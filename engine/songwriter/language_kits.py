"""What the songwriter knows about each vocal language, from `engine/songwriter/languages/*.json`.

One file per language the bot offers (`engine.spec.LANGUAGES`), written by
hand, holding:

- `heading`: the prompt's first line, in the language itself, so the model
  is told what to write in the language it must write;
- `example`: one worked song in that language (request, title, verse, a
  chorus that opens with the title, second verse); the model must not copy
  its lines (`engine.songwriter.checks.copied_example_line`);
- `template`: the template songwriter's lines when the model cannot be used;
- `line_chars`: the shortest and longest lyric line, in characters (scripts
  without spaces pack more into a character);
- `blocked`: drug and self-harm words the `clean` rating keeps out (the
  profanity list `glin-profanity` has neither; see `engine.songwriter.content_rating`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from engine.spec import LANGUAGES

FOLDER = Path(__file__).with_name("languages")


@dataclass(frozen=True)
class SongExample:
    genre: str
    mood: str
    theme: str
    title: str
    verse1: tuple[str, ...]
    chorus: tuple[str, ...]
    verse2: tuple[str, ...]

    @property
    def lines(self) -> tuple[str, ...]:
        return (*self.verse1, *self.chorus, *self.verse2)


@dataclass(frozen=True)
class TemplateLines:
    titles: tuple[str, ...]
    verse1: tuple[str, ...]
    verse2: tuple[str, ...]
    chorus: tuple[str, ...]


@dataclass(frozen=True)
class LanguageKit:
    code: str
    name: str
    heading: str
    example: SongExample
    template: TemplateLines
    line_chars: tuple[int, int]
    blocked: tuple[str, ...]


@cache
def language_kit(code: str) -> LanguageKit:
    """The kit of a vocal language; English for a code the bot does not offer."""
    if code not in LANGUAGES:
        code = "en"
    data = json.loads((FOLDER / f"{code}.json").read_text(encoding="utf-8"))
    example, template = data["example"], data["template"]
    return LanguageKit(
        code=code,
        name=data["name"],
        heading=data["heading"],
        example=SongExample(
            genre=example["genre"],
            mood=example["mood"],
            theme=example["theme"],
            title=example["title"],
            verse1=tuple(example["verse1"]),
            chorus=tuple(example["chorus"]),
            verse2=tuple(example["verse2"]),
        ),
        template=TemplateLines(
            titles=tuple(template["titles"]),
            verse1=tuple(template["verse1"]),
            verse2=tuple(template["verse2"]),
            chorus=tuple(template["chorus"]),
        ),
        line_chars=(int(data["line_chars"][0]), int(data["line_chars"][1])),
        blocked=tuple(data["blocked"]),
    )
