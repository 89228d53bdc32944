"""A song's sections and their tags, in ACE-Step 1.5's convention: title case,
with an optional modifier (`[Verse 1 - soft]`, `[Chorus - anthemic]`, `[Bridge]`).

The songwriter, not the model, writes the tags (`section_tags`): a tag costs a
small model six to eight tokens, one decoding step each, while text the
songwriter puts into the prompt is evaluated in one batch. The modifiers follow
the energy of the genre's and the station's moods, so a metal chorus is
`powerful` and a lo-fi verse `soft`.
"""

from __future__ import annotations

import random

from engine.songwriter.genres import genre_profile

#: Modifiers a section tag may carry, as in `[Chorus - anthemic]`.
MODIFIERS = {
    "Verse": ("soft", "building", "rhythmic", "whispered"),
    "Chorus": ("anthemic", "powerful", "soaring", "soft", "catchy"),
    "Bridge": ("quiet", "building", "emotional"),
}
#: The modifiers that fit a slow, a middling and a fast genre; None: a plain tag.
_BY_PACE: dict[str, dict[str, tuple[str | None, ...]]] = {
    "slow": {"Verse": ("soft", "whispered", None), "Chorus": ("soft", "soaring"), "Bridge": ("quiet", "emotional")},
    "middle": {"Verse": ("soft", "building", None), "Chorus": ("catchy", "soaring"), "Bridge": ("emotional", None)},
    "fast": {"Verse": ("rhythmic", "building", None), "Chorus": ("anthemic", "powerful"), "Bridge": ("building", None)},
}


def tag_line(name: str, modifier: str | None = None) -> str:
    """A section tag on its own line: `[Chorus - anthemic]\\n`."""
    return f"[{name} - {modifier}]\n" if modifier else f"[{name}]\n"


#: Mood words (the genres' own, `engine.songwriter.genres`, and common station moods) of calm and of lively music.
_CALM = frozenset(
    [
        "calm",
        "dreamy",
        "cozy",
        "tender",
        "smooth",
        "intimate",
        "serene",
        "spacious",
        "relaxed",
        "laid-back",
        "melancholic",
        "wistful",
        "sad",
        "chill",
    ]
)
_LIVELY = frozenset(
    [
        "energetic",
        "aggressive",
        "driving",
        "powerful",
        "rebellious",
        "euphoric",
        "confident",
        "festive",
        "lively",
        "gritty",
        "bold",
        "raw",
        "intense",
        "angry",
        "epic",
        "hype",
        "party",
    ]
)


def pace(genre: str, mood: str = "") -> str:
    """ "slow", "middle" or "fast": whether the genre's and the station's mood
    words are more calm or more lively (hip-hop is slow by its bpm, but not calm)."""
    words = [*genre_profile(genre).moods, *mood.lower().replace(",", " ").split()]
    energy = sum(word in _LIVELY for word in words) - sum(word in _CALM for word in words)
    return "fast" if energy > 0 else "slow" if energy < 0 else "middle"


def section_tags(genre: str, mood: str, seed: int, *, bridge: bool) -> dict[str, str]:
    """The tag line of each section a drafted song has (`Verse 1`, `Chorus`,
    `Verse 2`, and `Bridge` when asked), its modifier chosen by the pace and the
    seed. The second verse carries no modifier: it follows the first."""
    choices = _BY_PACE[pace(genre, mood)]
    rng = random.Random(seed)
    tags = {
        "Verse 1": tag_line("Verse 1", rng.choice(choices["Verse"])),
        "Chorus": tag_line("Chorus", rng.choice(choices["Chorus"])),
        "Verse 2": tag_line("Verse 2"),
    }
    if bridge:
        tags["Bridge"] = tag_line("Bridge", rng.choice(choices["Bridge"]))
    return tags
