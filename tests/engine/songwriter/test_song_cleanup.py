"""song_cleanup and song_checks: what the model wrote becomes a valid song, or a clear rejection."""

from __future__ import annotations

import pytest

from engine.songwriter.checks import (
    chorus_text,
    copied_example_line,
    form_problems,
    is_junk_line,
    shows_theme,
    theme_words,
)
from engine.songwriter.cleanup import (
    DurationRange,
    JunkOutputError,
    assemble_lyrics,
    build_caption,
    choose_music,
    clean_line,
    clean_tag,
    clean_title,
    make_spec,
)
from engine.songwriter.genres import genre_profile
from engine.songwriter.language_kits import language_kit
from engine.songwriter.prompt import SongBrief
from engine.spec import INSTRUMENTAL_LYRICS, SongSpec

BODY = (
    "[Verse 1 - soft]\nThe harbour lights are low\nThe gulls have gone to sleep\n"
    "[Chorus - anthemic]\nSalt and Wire, hold on tight\nWe sail into the night\n"
    "[Verse 2]\nThe compass spins and sings\nThe deck is cold and wet\n"
)


def brief(**fields: object) -> SongBrief:
    base = {"theme": "rain", "genre": "folk", "mood": "", "language": "en", "duration": 60}
    return SongBrief(**{**base, **fields})


def test_the_song_is_assembled_with_its_modifiers_and_a_repeated_chorus() -> None:
    lyrics = assemble_lyrics(BODY, brief())
    assert lyrics.split("\n")[0] == "[Verse 1 - soft]"
    assert lyrics.count("[Chorus - anthemic]") == 2 and lyrics.endswith("[Outro - fade out]")
    assert chorus_text(lyrics).count("Salt and Wire, hold on tight") == 2
    assert form_problems(lyrics) == []


def test_a_bridge_brings_the_chorus_back_once_more() -> None:
    body = BODY + "[Bridge - quiet]\nOne more wave to ride\nAnd then the shore\n"
    lyrics = assemble_lyrics(body, brief(duration=120))
    assert lyrics.count("[Chorus - anthemic]") == 3 and "[Bridge - quiet]" in lyrics


@pytest.mark.parametrize(
    ("tag", "clean"),
    [
        ("[Chorus - anthemic]", "[Chorus - anthemic]"),
        ("[Chorus - shouty]", "[Chorus]"),
        ("[Verse 2]", "[Verse 2]"),
        ("[Outro - fade out]", "[Outro]"),
        ("[verse]", None),
        ("[artist]", None),
    ],
)
def test_section_tags_keep_known_modifiers(tag: str, clean: str | None) -> None:
    assert clean_tag(tag) == clean


@pytest.mark.parametrize(
    "body",
    [
        "[Verse 1]\nonly a verse\nand more\n",
        '[Verse 1]\n4/5 (012)\n". Lyrics\n[Chorus]\nfine line here\n[Verse 2]\nanother one\n',
        "[Artist]\nsomething\n",
    ],
)
def test_answers_without_a_song_are_rejected(body: str) -> None:
    with pytest.raises(JunkOutputError):
        assemble_lyrics(body, brief())


@pytest.mark.parametrize("line", ["4/5 (012)", '". Lyrics', "Lyrics: here", "{json}", "@@@ x", "a", "https://x.y"])
def test_junk_lines_are_junk(line: str) -> None:
    assert is_junk_line(line) and clean_line(line, 48) == ""


def test_a_line_cut_at_the_limit_loses_its_unfinished_word() -> None:
    cut = "I was waiting by the door for you to come ho"
    assert clean_line(cut, len(cut)) == "I was waiting by the door for you to come"
    assert clean_line("A whole line", 48) == "A whole line"
    assert clean_title("Lighthouse Keeper Falls In Love With A W", 40) == ("Lighthouse Keeper Falls In Love With A")


def test_form_problems_name_what_is_wrong() -> None:
    assert form_problems(INSTRUMENTAL_LYRICS) == []
    assert any("verse, chorus, verse, chorus" in p for p in form_problems("[Verse]\na\nb"))
    assert any("section tag" in p for p in form_problems("[verse]\nline one\n"))
    long = "[Verse 1]\n" + "\n".join(["a fine line"] * 9)
    assert any("9 lines" in p for p in form_problems(long))


@pytest.mark.parametrize("genre", ["jazz", "sea shanty", "polka", "synthwave", "new genre"])
@pytest.mark.parametrize("mood", ["", "calm", "energetic", "sad"])
def test_bpm_key_and_metre_come_from_the_genre(genre: str, mood: str) -> None:
    profile = genre_profile(genre)
    for seed in range(10):
        bpm, key, metre = choose_music(brief(genre=genre, mood=mood), seed)
        assert profile.low_bpm <= bpm <= profile.high_bpm
        assert key in profile.keys and metre in profile.metres


def test_the_caption_names_the_genre_and_speaks_ace_steps_language() -> None:
    caption = build_caption(brief(genre="Indie Folk", mood="wistful"), 100, seed=3)
    tags = caption.split(", ")
    assert tags[0] == "indie folk" and "wistful" in tags and "mid-tempo" in tags
    assert len(tags) == len(set(tags)) >= 5
    assert not any(ch.isdigit() for ch in caption) and "}" not in caption
    instrumental = build_caption(brief(instrumental=True), 130, seed=3)
    assert "instrumental" in instrumental and "vocals" not in instrumental


def test_make_spec_gives_a_valid_spec_and_instrumentals_as_upstream() -> None:
    spec = make_spec("Salt and Wire", assemble_lyrics(BODY, brief()), brief(), DurationRange(40, 60), 7)
    assert SongSpec.model_validate_json(spec.model_dump_json()) == spec
    assert (spec.language, spec.seed, spec.duration) == ("en", 7, 60)
    inst = make_spec("Drift", "", brief(instrumental=True), DurationRange(40, 60), 7)
    assert (inst.lyrics, inst.language) == ("[Instrumental]", "unknown") and inst.instrumental
    with pytest.raises(JunkOutputError):
        make_spec("  ", "", brief(), DurationRange(40, 60), 7)


def test_empty_lyrics_of_old_specs_read_as_an_instrumental() -> None:
    old = SongSpec(title="t", caption="c", lyrics="", bpm=100, key="C major", duration=30)
    assert (old.lyrics, old.language, old.instrumental) == ("[Instrumental]", "unknown", True)


def test_theme_words_and_copies_are_found() -> None:
    words = theme_words("a lighthouse keeper who falls in love with a ship")
    assert words == {"lighthouse", "keeper", "falls", "love", "ship"}
    assert shows_theme(words, "Falling for the tide") and not shows_theme(words, "Rain")
    kit = language_kit("de")
    assert copied_example_line("Der letzte Zug", "", kit) == "Der letzte Zug"
    near = "[Verse 1]\nDurch Felder, die im Dunkeln ruhen\n"
    assert copied_example_line("Neu", near, kit) == "Durch Felder, die im Dunkeln ruhen"
    assert copied_example_line("Sommerliebe", "[Verse 1]\nDie Sonne lacht\n", kit) is None
