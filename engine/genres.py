"""What a genre usually sounds like: tempo range, metre and instruments.

Shared by the template songwriter (to write a spec from nothing) and the
cleanup (to fill out a caption the model left thin). A genre is matched by the
first known word it contains ("dark synthwave" -> "synthwave"); anything else
gets a neutral profile.
"""

from __future__ import annotations

from typing import NamedTuple


class GenreProfile(NamedTuple):
    low_bpm: int
    high_bpm: int
    time_signature: str
    instruments: tuple[str, ...]


#: Genre word -> profile, the more specific words first: the first one found wins.
_GENRES: dict[str, GenreProfile] = {
    "shanty": GenreProfile(96, 116, "6/8", ("accordion", "stomping feet", "group vocals")),
    "waltz": GenreProfile(84, 100, "3/4", ("strings", "piano")),
    "polka": GenreProfile(110, 130, "2/4", ("accordion", "tuba", "clarinet")),
    "lofi": GenreProfile(70, 90, "4/4", ("rhodes piano", "vinyl crackle", "soft drums")),
    "hip hop": GenreProfile(80, 100, "4/4", ("boom bap drums", "sampled piano", "deep bass")),
    "drum and bass": GenreProfile(170, 176, "4/4", ("breakbeats", "reese bass")),
    "synthwave": GenreProfile(100, 120, "4/4", ("analog synths", "gated drums", "synth bass")),
    "punk": GenreProfile(160, 200, "4/4", ("distorted guitars", "fast drums")),
    "metal": GenreProfile(120, 180, "4/4", ("heavy guitars", "double kick drums")),
    "house": GenreProfile(120, 128, "4/4", ("four on the floor kick", "synth chords")),
    "techno": GenreProfile(125, 140, "4/4", ("driving kick", "acid synth")),
    "ambient": GenreProfile(60, 80, "4/4", ("pads", "field recordings")),
    "jazz": GenreProfile(90, 140, "4/4", ("upright bass", "brushed drums", "saxophone")),
    "blues": GenreProfile(70, 100, "4/4", ("slide guitar", "harmonica", "shuffle drums")),
    "country": GenreProfile(90, 120, "4/4", ("pedal steel", "acoustic guitar", "fiddle")),
    "folk": GenreProfile(80, 120, "4/4", ("acoustic guitar", "fiddle", "hand claps")),
    "reggae": GenreProfile(70, 90, "4/4", ("offbeat guitar", "bass", "organ")),
    "latin": GenreProfile(90, 110, "4/4", ("nylon guitar", "congas", "brass")),
    "classical": GenreProfile(60, 120, "4/4", ("string quartet", "piano")),
    "rock": GenreProfile(110, 150, "4/4", ("electric guitars", "live drums", "bass guitar")),
    "pop": GenreProfile(100, 124, "4/4", ("synths", "punchy drums", "bright piano")),
}
_DEFAULT = GenreProfile(90, 120, "4/4", ("piano", "guitar", "drums"))
#: The genre words the profiles know, for suggestions (e.g. command autocomplete).
GENRES: tuple[str, ...] = tuple(_GENRES)


def genre_profile(genre: str) -> GenreProfile:
    """The profile of the first known genre word in `genre`, else a neutral one."""
    lowered = genre.lower()
    for word, profile in _GENRES.items():
        if word in lowered:
            return profile
    return _DEFAULT
