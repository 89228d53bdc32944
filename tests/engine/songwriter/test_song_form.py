"""The section tags the songwriter writes, and their modifiers by the music's energy."""

from __future__ import annotations

import pytest

from engine.songwriter.checks import TAG
from engine.songwriter.cleanup import clean_tag
from engine.songwriter.song_form import MODIFIERS, pace, section_tags, tag_line


@pytest.mark.parametrize(
    ("genre", "mood", "expected"),
    [
        ("metal", "", "fast"),
        ("hip-hop", "", "fast"),  # slow by its bpm, but not calm
        ("lofi", "", "slow"),
        ("ballad", "", "slow"),
        ("pop", "", "middle"),
        ("pop", "calm, dreamy", "slow"),  # the station's mood counts too
        ("something unknown", "angry", "fast"),
    ],
)
def test_pace_follows_the_moods_of_genre_and_station(genre: str, mood: str, expected: str) -> None:
    assert pace(genre, mood) == expected


def test_tags_are_ace_step_tags_that_cleanup_keeps() -> None:
    for seed in range(20):
        for genre in ("metal", "lofi", "pop"):
            tags = section_tags(genre, "", seed, bridge=seed % 2 == 0)
            assert list(tags)[:3] == ["Verse 1", "Chorus", "Verse 2"]
            assert ("Bridge" in tags) == (seed % 2 == 0)
            for name, line in tags.items():
                tag = line.rstrip("\n")
                assert line.endswith("\n") and TAG.match(tag) and clean_tag(tag) == tag
                assert tag.startswith(f"[{name}")
            assert tags["Verse 2"] == "[Verse 2]\n"


def test_modifiers_suit_the_energy() -> None:
    fast = {section_tags("metal", "", seed, bridge=False)["Chorus"] for seed in range(40)}
    slow = {section_tags("lofi", "", seed, bridge=False)["Chorus"] for seed in range(40)}
    assert fast == {"[Chorus - anthemic]\n", "[Chorus - powerful]\n"}
    assert slow == {"[Chorus - soft]\n", "[Chorus - soaring]\n"}
    assert all(m in MODIFIERS["Chorus"] for m in ("anthemic", "powerful", "soft", "soaring"))


def test_tag_line_without_a_modifier() -> None:
    assert tag_line("Bridge") == "[Bridge]\n"
    assert tag_line("Chorus", "catchy") == "[Chorus - catchy]\n"
