"""song_cleanup: raw model answers become valid, clamped, safe specs, or a clear rejection."""

from __future__ import annotations

import json

import pytest

from engine.song_cleanup import (
    DurationRange,
    JunkOutputError,
    clean_caption,
    clean_lyrics,
    clean_title,
    parse_answer,
    section_name,
    spec_from_answer,
    sung_lines,
)
from engine.song_prompt import SongBrief, example_songs
from engine.spec import MAX_LYRICS
from engine.text_safety import is_safe_text

BRIEF = SongBrief(theme="rain", genre="jazz", mood="calm", language="ja", duration=60)
RANGE = DurationRange(40, 60)


def answer(**fields: object) -> str:
    base = {
        "title": "Rain Song",
        "caption": "jazz, piano, soft vocals",
        "bpm": 90,
        "key": "A minor",
        "time_signature": "4/4",
        "duration": 50,
        "lyrics": "[verse]\nline one here\nline two here",
    }
    return json.dumps({**base, **fields})


def test_a_good_answer_keeps_its_values_and_takes_the_station_language() -> None:
    spec = spec_from_answer(answer(), BRIEF, RANGE, seed=7)
    assert (spec.title, spec.bpm, spec.key, spec.time_signature) == (
        "Rain Song",
        90,
        "A minor",
        "4/4",
    )
    assert spec.duration == 50 and spec.language == "ja" and spec.seed == 7
    assert spec.lyrics == "[verse]\nline one here\nline two here"


@pytest.mark.parametrize(
    ("bpm", "expected"), [(3e15, 220), (-5, 40), (0, 40), (221, 220), (39, 40), (128, 128)]
)
def test_bpm_is_clamped(bpm: float, expected: int) -> None:
    assert spec_from_answer(answer(bpm=bpm), BRIEF, RANGE, 1).bpm == expected


@pytest.mark.parametrize(
    ("duration", "expected"), [(3_000_000_000_000_000, 60), (-1, 40), (5, 40), (55, 55)]
)
def test_duration_is_clamped_to_the_range(duration: int, expected: int) -> None:
    assert spec_from_answer(answer(duration=duration), BRIEF, RANGE, 1).duration == expected


@pytest.mark.parametrize(
    ("genre", "model_metre", "metre"),
    [
        ("jazz", "2/4", "4/4"),
        ("jazz", "3/4", "3/4"),
        ("indie folk ballad", "6/8", "6/8"),
        ("viennese waltz", "4/4", "3/4"),
        ("sea shanty", "2/4", "6/8"),
        ("polka", "4/4", "2/4"),
        ("something new", "2/4", "4/4"),
    ],
)
def test_the_metre_fits_the_genre(genre: str, model_metre: str, metre: str) -> None:
    brief = SongBrief(theme="x", genre=genre, mood="", language="en", duration=60)
    spec = spec_from_answer(answer(time_signature=model_metre), brief, RANGE, 1)
    assert spec.time_signature == metre


def test_a_fixed_range_sets_the_length() -> None:
    spec = spec_from_answer(answer(duration=200), BRIEF, DurationRange(30, 30), 1)
    assert spec.duration == 30


def test_an_answer_cut_off_inside_the_lyrics_is_completed() -> None:
    cut = answer(lyrics="[verse]\nfirst line\nsecond line\nthird li")[:-3]
    assert parse_answer(cut)["lyrics"].endswith("third l")
    assert parse_answer(answer()[:-2] + "\\")["title"] == "Rain Song"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json at all", "not a JSON object"),
        ("[1, 2, 3]", "not a JSON object"),
        (answer(title="  @everyone  "), "title is empty"),
        (answer(lyrics="[verse]\n[chorus]\nonly one"), "fewer than two"),
        (answer(key="H major"), "unknown key"),
        (answer(time_signature="5/4"), "time signature"),
        (answer(title=example_songs()[0]["title"]), "copied the worked example"),
    ],
)
def test_junk_is_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(JunkOutputError, match=reason):
        spec_from_answer(text, BRIEF, RANGE, 1)


def test_hostile_model_output_is_made_safe() -> None:
    text = answer(
        title="@everyone <@123> Free https://evil.com",
        caption="jazz, join discord.gg/abc, <@&42> role, \u202eevil",
        lyrics="[verse]\n@here listen\nvisit www.evil.org today\n\x00\u200b<#99> hidden\nsing",
    )
    spec = spec_from_answer(text, BRIEF, RANGE, 1)
    assert is_safe_text(spec.title) and is_safe_text(spec.caption)
    assert is_safe_text(spec.lyrics, multiline=True)
    for field in (spec.title, spec.caption, spec.lyrics):
        assert "@" not in field and "<" not in field and "\u202e" not in field
        for link in ("http", "evil.com", "discord.gg", "www.", "evil.org"):
            assert link not in field


def test_title_is_one_safe_line_without_path_separators() -> None:
    assert clean_title('"../../etc/passwd\nroot"') == "etc-passwd root"
    assert len(clean_title("word " * 100)) <= 80


def test_caption_gets_the_station_genre_and_mood_once() -> None:
    caption = clean_caption("Jazz, piano, piano, , [verse], soft vocals", BRIEF)
    assert caption == "jazz, calm, piano, soft vocals"


def test_a_thin_caption_gets_the_genre_instruments() -> None:
    assert (
        clean_caption("night", BRIEF) == "jazz, calm, night, upright bass, brushed drums, saxophone"
    )
    instrumental = SongBrief("x", "ambient", "", "en", 60, instrumental=True)
    assert clean_caption("", instrumental) == "ambient, instrumental, pads, field recordings"


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("Verse 1", "verse"),
        ("CHORUS", "chorus"),
        ("Pre-Chorus", "pre-chorus"),
        ("pre chorus 2", "pre-chorus"),
        ("Guitar Solo", "solo"),
        ("Refrain:", "chorus"),
        ("artist", None),
        ("music", None),
    ],
)
def test_section_names_are_normalised(tag: str, name: str | None) -> None:
    assert section_name(tag) == name


def test_lyrics_structure_is_normalised() -> None:
    raw = (
        "I start without a tag\n[Verse 2] words after the tag\n[artist]\n[Chorus]\n[Chorus]\n"
        "we sing [bad tag] here\n: a line with a colon\n***\n[Bridge]\n[Outro]"
    )
    assert clean_lyrics(raw, 60) == (
        "[verse]\nI start without a tag\n[verse]\nwords after the tag\n[chorus]\nwe sing here\n"
        "a line with a colon\n[outro]"
    )


def test_a_base_model_running_into_the_next_example_is_cut() -> None:
    raw = '[verse]\nfirst line\nsecond line\nRequest: {"genre": "pop"}\nSong: {"title"'
    assert clean_lyrics(raw, 60) == "[verse]\nfirst line\nsecond line"


def test_long_prose_lines_are_split() -> None:
    prose = "This is a very long sentence that keeps going, and going, " * 6
    lines = clean_lyrics(f"[verse]\n{prose}", 600).split("\n")
    assert len(lines) > 3 and all(len(line) <= 80 for line in lines)


def test_sung_lines_are_capped_by_the_length_of_the_song() -> None:
    raw = "[verse]\n" + "\n".join(f"line {i} of many" for i in range(200))
    assert sung_lines(clean_lyrics(raw, 30)) == 10
    assert sung_lines(clean_lyrics(raw, 12)) == 4
    assert (
        len(clean_lyrics("[verse]\n" + "\n".join("la " * 26 for _ in range(400)), 600))
        <= MAX_LYRICS
    )


def test_instrumental_briefs_get_no_lyrics() -> None:
    brief = SongBrief("x", "ambient instrumental", "", "en", 60, instrumental=True)
    spec = spec_from_answer(answer(lyrics=""), brief, RANGE, 1)
    assert spec.lyrics == "" and spec.instrumental
