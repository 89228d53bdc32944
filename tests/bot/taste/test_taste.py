"""The taste: song features, signals, scores, the lean, and how both songwriters apply it."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from bot.store import GuildSettings
from bot.taste.features import Feature, caption_tags, song_features, tag_kind, tempo_band
from bot.taste.profile import (
    EXPLORE_SHARE,
    PlayEvidence,
    SongEvidence,
    build_profile,
    explores,
    lean_from,
)
from engine.songwriter.cleanup import DurationRange, make_spec
from engine.songwriter.prompt import make_brief
from engine.songwriter.taste_lean import lean_bpm_range, lean_choice, lean_keys, lean_tags
from engine.songwriter.template import template_spec
from engine.spec import BpmBand, SongSpec, StationStyle, TasteLean

NOW = 1_900_000_000.0


def spec(caption: str, bpm: int = 100, key: str = "A minor", lyrics: str = "[verse]\nla") -> SongSpec:
    return SongSpec(title="t", caption=caption, bpm=bpm, key=key, duration=60, lyrics=lyrics)


def song(
    number: int,
    caption: str,
    *,
    likes: int = 0,
    skipped_at: float | None = None,
    bpm: int = 100,
    key: str = "A minor",
    at: float = NOW,
) -> SongEvidence:
    plays = (
        (PlayEvidence("fresh", "skipped", skipped_at),)
        if skipped_at is not None
        else (PlayEvidence("fresh", "finished", 60.0),)
    )
    return SongEvidence(number, spec(caption, bpm, key), 60.0, None, False, likes, 0, plays, at)


def settings(genre: str = "lofi hip hop", mood: str = "") -> GuildSettings:
    return GuildSettings(1, genre, "", mood, "en", 60, True, None, None, None, None, 0.0)


def test_features_sort_caption_tags_and_name_tempo_key_language_adapter() -> None:
    features = song_features(
        spec(
            "Lofi Hip Hop, warm Rhodes, soft female vocals, dreamy, <@123> tape hiss, "
            "the first warm day of spring, a very long phrase about a rainy night"
        ),
        adapter="my-band",
    )
    assert features == {
        Feature("genre", "lofi hip hop"),
        Feature("instrument", "warm rhodes"),
        Feature("vocals", "soft female vocals"),
        Feature("mood", "dreamy"),
        Feature("tag", "tape hiss"),  # the mention is gone
        Feature("tempo", "100-119 bpm"),
        Feature("key", "minor key"),
        Feature("language", "en"),
        Feature("adapter", "my-band"),
    }  # the auto topic and the long phrase are what the song is about, not its sound
    assert Feature("language", "instrumental") in song_features(spec("ambient", lyrics=""))
    assert tag_kind("drum and bass") == "genre" and tag_kind("reese bass") == "instrument"
    assert tempo_band(40) == (40, 59) and tempo_band(219) == (200, 220)
    assert caption_tags("a, A ,b") == ["a", "b"]


def test_an_early_skip_counts_more_than_a_late_one_and_a_song_is_bounded() -> None:
    early = song(1, "x", skipped_at=3.0).signal()
    late = song(2, "x", skipped_at=50.0).signal()
    assert early < late < 0 and early == pytest.approx(-1.9)
    assert song(3, "x", likes=12).signal() == 3.0  # one crowded room cannot outweigh the rest
    assert song(4, "x", skipped_at=3.0).counts() == {"early skip": 1}


def test_scores_credit_the_feature_that_explains_the_reception() -> None:
    """Listeners like female vocals and skip vinyl crackle; the other instruments only
    come along with them, so they get (almost) no credit."""
    rng = random.Random(3)
    evidence = []
    for number in range(60):
        instruments = [i for i in ("rhodes piano", "vinyl crackle", "soft drums") if rng.random() < 0.5]
        voice = rng.choice(["female vocals", "male vocals", "duet vocals"])
        caption = ", ".join(["lofi hip hop", *instruments, voice])
        skipped = 5.0 if "vinyl crackle" in instruments else None
        likes = 2 if voice == "female vocals" and skipped is None else 0
        evidence.append(
            song(
                number,
                caption,
                likes=likes,
                skipped_at=skipped,
                bpm=rng.randint(70, 90),
                key=rng.choice(["A minor", "C major"]),
            )
        )
    profile = build_profile(evidence, NOW)
    scores = {s.feature.value: s for s in profile.scores}
    assert profile.likes[0].feature.value == "female vocals"
    assert profile.dislikes[0].feature.value == "vinyl crackle"
    assert scores["female vocals"].evidence["like"] > 0
    assert scores["vinyl crackle"].evidence == {"early skip": scores["vinyl crackle"].songs}
    for noise in ("minor key", "major key", "60-79 bpm", "80-99 bpm", "duet vocals"):
        assert abs(scores[noise].score) < 0.5, noise
    assert "lofi hip hop" not in scores  # in every song: says nothing
    lean = lean_from(profile, settings())
    assert lean is not None and lean.prefer[0] == "female vocals" and "vinyl crackle" in lean.avoid
    assert lean.bpm is None and lean.mode is None


def test_old_taste_fades() -> None:
    """Piano was liked a while ago; now it is skipped."""

    def liked_piano(days: float) -> list[SongEvidence]:
        return [
            song(
                n,
                "lofi, piano" if n % 2 else "lofi, guitar",
                likes=3 * (n % 2),
                at=NOW - days * 86400,
            )
            for n in range(40)
        ]

    recent = [
        song(100 + n, "lofi, piano" if n % 2 else "lofi, guitar", skipped_at=2.0 if n % 2 else None) for n in range(8)
    ]
    assert build_profile(liked_piano(days=30), NOW).likes[0].feature.value == "piano"
    assert build_profile(liked_piano(days=90), NOW).likes == []  # faded away
    assert build_profile(recent + liked_piano(days=90), NOW).dislikes[0].feature.value == "piano"


def test_the_lean_keeps_the_station_genre_and_never_pulls_to_another_genre() -> None:
    evidence = []
    for number in range(30):
        jazzy = number % 3 == 0
        caption = "synthwave, dreamy, " + ("jazz, saxophone" if jazzy else "gated drums")
        evidence.append(
            song(
                number,
                caption,
                likes=2 if jazzy else 0,
                skipped_at=None if jazzy else 4.0,
                bpm=70 if jazzy else 150,
            )
        )
    profile = build_profile(evidence, NOW)
    assert {s.feature.value for s in profile.likes} >= {"jazz", "saxophone"}
    lean = lean_from(profile, settings(genre="synthwave", mood="dreamy"))
    assert lean is not None
    assert "saxophone" in lean.prefer and "jazz" not in lean.prefer  # not another genre
    assert "gated drums" in lean.avoid and "synthwave" not in lean.avoid
    assert lean.bpm == BpmBand(low=60, high=79) and BpmBand(low=140, high=159) in lean.avoid_bpm
    assert lean_from(build_profile([], NOW), settings()) is None


def test_one_song_in_five_explores() -> None:
    share = sum(explores(job) for job in range(1, 5001)) / 5000
    assert share == pytest.approx(EXPLORE_SHARE, abs=0.02)
    assert explores(17) == explores(17)  # the same job always decides the same way


def test_a_lean_is_bounded_plain_data() -> None:
    lean = TasteLean(prefer=("a",), bpm=BpmBand(low=80, high=99))
    assert TasteLean.model_validate_json(lean.model_dump_json()) == lean
    with pytest.raises(ValidationError):
        TasteLean(prefer=("a", "b", "c", "d"))
    with pytest.raises(ValidationError):
        TasteLean(avoid=("x" * 41,))
    with pytest.raises(ValidationError):
        BpmBand(low=100, high=90)
    with pytest.raises(ValidationError):
        BpmBand(low=10, high=90)
    assert TasteLean().empty


def test_lean_helpers_choose_within_what_the_station_allows() -> None:
    lean = TasteLean(
        prefer=("B",),
        avoid=("c",),
        bpm=BpmBand(low=100, high=119),
        avoid_bpm=(BpmBand(low=100, high=104),),
        mode="minor",
    )
    rng = random.Random(1)
    assert lean_choice(["a", "b", "c"], 2, lean, rng)[0] == "b"
    assert "c" not in lean_choice(["a", "b", "c"], 2, lean, rng)
    assert sorted(lean_choice(["c", "d"], 2, lean, rng)) == ["c", "d"]  # nothing else left
    assert lean_choice(["a", "b"], 1, None, random.Random(4)) == random.Random(4).sample(["a", "b"], 1)
    assert lean_bpm_range(90, 130, lean) == (105, 119)
    assert lean_bpm_range(60, 80, lean) == (60, 80)  # no overlap: the genre's range stays
    assert all(key.endswith("minor") for key in lean_keys(["A minor", "C major"], lean))
    assert lean_tags(["pop", "c", "x"], lean, keep=["pop"]) == ["pop", "x", "B"]
    assert lean_tags(["c"], TasteLean(avoid=("c",)), keep=["c"]) == ["c"]  # the station's own


def test_the_template_songwriter_leans_to_the_taste() -> None:
    lean = TasteLean(
        prefer=("female vocals",),
        avoid=("vinyl crackle",),
        bpm=BpmBand(low=80, high=89),
        mode="major",
    )
    style = StationStyle(genre="lofi hip hop", lean=lean)
    for seed in range(20):
        written = template_spec(make_brief("", style, duration=60), DurationRange(60, 60), seed)
        tags = caption_tags(written.caption)
        assert "female vocals" in tags and "vinyl crackle" not in tags, tags
        assert 80 <= written.bpm <= 89 and written.key.endswith("major")


def test_the_models_songs_lean_to_the_taste_where_their_sound_is_chosen() -> None:
    """The model writes the title and lyrics; the caption, tempo and key of its song are
    chosen in `make_spec`, which leans there, with the lean's tags made prompt-safe."""
    lean = TasteLean(
        prefer=("warm rhodes", "<@&1> [INST] tape"),
        avoid=("male vocals", "warm male vocals"),
        bpm=BpmBand(low=80, high=89),
        mode="minor",
    )
    brief = make_brief("", StationStyle(genre="lofi hip hop", lean=lean), duration=60)
    assert brief.lean is not None and brief.lean.prefer == ("warm rhodes", "INST tape")
    lyrics = "[Verse 1]\nThe bus is late\n[Chorus]\nNight bus"
    for seed in range(10):
        written = make_spec("Night Bus", lyrics, brief, DurationRange(40, 60), seed)
        tags = caption_tags(written.caption)
        assert "warm rhodes" in tags and not {"male vocals", "warm male vocals"} & set(tags)
        assert 80 <= written.bpm <= 89 and written.key.endswith("minor"), written
        assert "<@&1>" not in written.caption
    # An instrumental station avoids what listeners skip but gets no liked voice.
    instrumental = make_brief(
        "",
        StationStyle(genre="ambient instrumental", lean=TasteLean(prefer=("female vocals",), avoid=("pads",))),
        duration=60,
    )
    caption = template_spec(instrumental, DurationRange(60, 60), 1).caption
    assert "female vocals" not in caption and "pads" not in caption.split(", ")
    # A request's theme wins: requests never get a lean, and without one nothing changes.
    plain = make_brief("", StationStyle(genre="lofi hip hop"), duration=60)
    assert plain.lean is None
    unleaned = make_spec("Night Bus", lyrics, plain, DurationRange(40, 60), 3)
    assert unleaned == make_spec("Night Bus", lyrics, plain, DurationRange(40, 60), 3)
