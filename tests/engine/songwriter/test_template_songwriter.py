"""The template songwriter: a valid song in every language the bot offers, repeatable, varied."""

from __future__ import annotations

import pytest

from engine.songwriter.checks import chorus_text, copied_example_line, form_problems, sung_text
from engine.songwriter.cleanup import DurationRange
from engine.songwriter.content_rating import blocked_words
from engine.songwriter.genres import genre_profile
from engine.songwriter.language_id import identify
from engine.songwriter.language_kits import language_kit
from engine.songwriter.prompt import make_brief
from engine.songwriter.template import template_spec
from engine.spec import LANGUAGES, SongSpec, StationStyle
from engine.text_safety import is_safe_text


def brief(theme: str = "rainy night in Tokyo", duration: int = 60, **style: object):
    return make_brief(theme, StationStyle(**style), duration=duration)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_gets_a_song_in_that_language(language: str) -> None:
    spec = template_spec(brief("x", genre="folk", language=language), DurationRange(40, 60), 3)
    assert SongSpec.model_validate(spec.model_dump()) == spec
    assert spec.language == language and form_problems(spec.lyrics) == []
    assert identify(f"{spec.title}\n{sung_text(spec.lyrics)}", "any")[0] == language
    assert not blocked_words(f"{spec.title}\n{spec.caption}\n{spec.lyrics}", language)
    assert copied_example_line(spec.title, spec.lyrics, language_kit(language)) is None
    assert is_safe_text(spec.title) and is_safe_text(spec.caption)


@pytest.mark.parametrize("genre", ["jazz", "sea shanty", "polka", "waltz", "unknown-genre", ""])
def test_genre_sets_tempo_metre_and_caption(genre: str) -> None:
    spec = template_spec(brief(genre=genre), DurationRange(60, 60), seed=5)
    profile = genre_profile(genre or "pop")
    assert profile.low_bpm <= spec.bpm <= profile.high_bpm and spec.time_signature in profile.metres
    assert spec.caption.startswith((genre or "pop").lower())


def test_a_theme_in_the_station_language_is_the_title_and_the_hook() -> None:
    spec = template_spec(brief("rainy night in Tokyo"), DurationRange(60, 60), seed=1)
    assert spec.title == "Rainy Night In Tokyo"
    assert chorus_text(spec.lyrics).startswith("Rainy Night In Tokyo")
    french = template_spec(brief("rainy night in Tokyo", language="fr"), DurationRange(60, 60), 1)
    assert french.title in language_kit("fr").template.titles


def test_same_seed_same_spec_and_recent_titles_are_avoided() -> None:
    b = brief("x", language="de")
    first = template_spec(b, DurationRange(40, 60), seed=9)
    assert template_spec(b, DurationRange(40, 60), seed=9) == first
    other = template_spec(b, DurationRange(40, 60), seed=9, recent_titles=(first.title,))
    assert other.title != first.title


def test_short_and_long_songs_and_instrumentals() -> None:
    short = template_spec(brief(duration=30), DurationRange(30, 30), seed=2)
    assert len(sung_text(short.lyrics).split("\n")) == 8  # 2 lines x 4 sections
    long = template_spec(brief(duration=180), DurationRange(180, 180), seed=2)
    assert "[Bridge]" in long.lyrics and long.lyrics.count("[Chorus]") == 3
    inst = template_spec(brief("calm", genre="instrumental ambient"), DurationRange(60, 60), 2)
    assert (inst.lyrics, inst.language) == ("[Instrumental]", "unknown")
