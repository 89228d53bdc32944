"""The template songwriter: always a valid spec, repeatable, varied, never a recent title."""

from __future__ import annotations

import pytest

from engine.song_cleanup import DurationRange, sung_lines
from engine.song_prompt import make_brief
from engine.spec import LANGUAGES, SongSpec, StationStyle
from engine.template_songwriter import template_spec
from engine.text_safety import is_safe_text


def brief(theme: str = "rainy night in Tokyo", **style: object):
    return make_brief(theme, StationStyle(**style), duration=60, seed=1)


@pytest.mark.parametrize("genre", ["jazz", "sea shanty", "polka", "waltz", "unknown-genre", ""])
@pytest.mark.parametrize("language", ["en", "ja", "es"])
def test_every_genre_and_language_gives_a_valid_spec(genre: str, language: str) -> None:
    spec = template_spec(brief(genre=genre, language=language), DurationRange(40, 60), seed=3)
    assert SongSpec.model_validate(spec.model_dump()) == spec
    assert spec.language == language and 40 <= spec.duration <= 60
    assert sung_lines(spec.lyrics) >= 2 and spec.lyrics.startswith("[verse]")
    assert is_safe_text(spec.title) and is_safe_text(spec.caption)


def test_genre_sets_the_metre_and_tempo_range() -> None:
    shanty = template_spec(brief(genre="sea shanty"), DurationRange(60, 60), seed=5)
    assert shanty.time_signature == "6/8" and 96 <= shanty.bpm <= 116
    polka = template_spec(brief(genre="polka"), DurationRange(60, 60), seed=5)
    assert polka.time_signature == "2/4"


def test_same_seed_same_spec_other_seeds_vary() -> None:
    b, durations = brief(), DurationRange(40, 60)
    assert template_spec(b, durations, 11) == template_spec(b, durations, 11)
    specs = {template_spec(b, durations, seed) for seed in range(12)}
    assert len({(s.title, s.key, s.bpm) for s in specs}) >= 8


def test_recent_titles_are_not_repeated() -> None:
    b, durations = brief(), DurationRange(40, 60)
    first = template_spec(b, durations, 11)
    second = template_spec(b, durations, 11, recent_titles=(first.title,))
    assert second.title != first.title


def test_hostile_and_empty_themes_still_give_safe_specs() -> None:
    for theme in ["", "@everyone https://evil.com <@1>", "\u202e\u200b" * 50, "x" * 10_000]:
        spec = template_spec(brief(theme), DurationRange(10, 600), seed=2)
        assert is_safe_text(spec.title) and is_safe_text(spec.caption)
        assert is_safe_text(spec.lyrics, multiline=True)
        assert "@" not in spec.lyrics + spec.title + spec.caption


def test_long_songs_get_more_sections_and_instrumentals_none() -> None:
    short = template_spec(brief(), DurationRange(30, 30), seed=4)
    long = template_spec(brief(), DurationRange(180, 180), seed=4)
    assert sung_lines(long.lyrics) > sung_lines(short.lyrics)
    assert "[bridge]" in long.lyrics
    instrumental = template_spec(brief(genre="ambient instrumental"), DurationRange(60, 60), 4)
    assert instrumental.instrumental and "instrumental" in instrumental.caption


@pytest.mark.parametrize("language", LANGUAGES)
def test_all_languages_are_accepted(language: str) -> None:
    spec = template_spec(brief(language=language), DurationRange(60, 60), seed=1)
    assert spec.language == language
