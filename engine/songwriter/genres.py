"""What a genre usually sounds like: tempo range, metres, keys, instruments, moods.

Shared by the songwriter (bpm, key and metre are chosen within the genre's
table, and the model's words are clamped to it), the template songwriter,
the caption builder and the benchmark's bpm check. A genre is matched by the
first known word it contains ("dark synthwave" -> "synthwave"); anything else
gets a neutral profile. Tempo ranges are the usual ones for each style (a
genre's typical beats per minute, not its extremes).
"""

from __future__ import annotations

from typing import NamedTuple

from engine.spec import KEYS

#: Keys that sit well on guitars (open strings): what rock, folk, country and blues use most.
GUITAR_KEYS = (
    "E major",
    "A major",
    "D major",
    "G major",
    "C major",
    "E minor",
    "A minor",
    "D minor",
    "B minor",
    "F# minor",
)
#: Keys of horns and piano (the flat keys, spelled with sharps as ACE-Step does).
JAZZ_KEYS = (
    "F major",
    "A# major",
    "D# major",
    "G# major",
    "C major",
    "C minor",
    "D minor",
    "G minor",
    "F minor",
    "A# minor",
)


class GenreProfile(NamedTuple):
    low_bpm: int
    high_bpm: int
    metres: tuple[str, ...]
    instruments: tuple[str, ...]
    moods: tuple[str, ...] = ("warm", "uplifting", "heartfelt")
    keys: tuple[str, ...] = KEYS

    @property
    def time_signature(self) -> str:
        """The genre's typical metre."""
        return self.metres[0]

    def clamp_bpm(self, bpm: int) -> int:
        return max(self.low_bpm, min(self.high_bpm, bpm))


_FOUR = ("4/4",)
#: Genre word -> profile, the more specific words first: the first one found wins.
_GENRES: dict[str, GenreProfile] = {
    "shanty": GenreProfile(
        96,
        116,
        ("6/8",),
        ("accordion", "stomping feet", "group vocals", "fiddle"),
        ("rousing", "humorous", "hearty"),
        GUITAR_KEYS,
    ),
    "waltz": GenreProfile(84, 100, ("3/4",), ("strings", "piano", "accordion"), ("elegant", "romantic", "nostalgic")),
    "polka": GenreProfile(110, 130, ("2/4",), ("accordion", "tuba", "clarinet"), ("cheerful", "playful", "festive")),
    "bossa": GenreProfile(
        110,
        140,
        _FOUR,
        ("nylon guitar", "soft percussion", "upright bass"),
        ("relaxed", "sunny", "intimate"),
        JAZZ_KEYS,
    ),
    "lofi": GenreProfile(
        70,
        90,
        _FOUR,
        ("rhodes piano", "vinyl crackle", "soft drums", "mellow bass"),
        ("calm", "dreamy", "cozy"),
    ),
    "lo-fi": GenreProfile(
        70,
        90,
        _FOUR,
        ("rhodes piano", "vinyl crackle", "soft drums", "mellow bass"),
        ("calm", "dreamy", "cozy"),
    ),
    "trap": GenreProfile(130, 160, _FOUR, ("808 bass", "hi-hat rolls", "dark synths"), ("dark", "confident", "moody")),
    "hip hop": GenreProfile(
        80,
        100,
        _FOUR,
        ("boom bap drums", "sampled piano", "deep bass", "turntable scratches"),
        ("confident", "laid-back", "gritty"),
    ),
    "hip-hop": GenreProfile(
        80,
        100,
        _FOUR,
        ("boom bap drums", "sampled piano", "deep bass", "turntable scratches"),
        ("confident", "laid-back", "gritty"),
    ),
    "rap": GenreProfile(
        80,
        100,
        _FOUR,
        ("boom bap drums", "deep bass", "sampled piano"),
        ("confident", "gritty", "bold"),
    ),
    "drum and bass": GenreProfile(
        165,
        176,
        _FOUR,
        ("breakbeats", "reese bass", "atmospheric pads"),
        ("energetic", "dark", "driving"),
    ),
    "dubstep": GenreProfile(
        138,
        142,
        _FOUR,
        ("wobble bass", "heavy drops", "synths"),
        ("aggressive", "dark", "energetic"),
    ),
    "synthwave": GenreProfile(
        100,
        120,
        _FOUR,
        ("analog synths", "gated drums", "synth bass", "arpeggiator"),
        ("nostalgic", "dreamy", "driving"),
    ),
    "reggaeton": GenreProfile(
        88,
        100,
        _FOUR,
        ("dembow beat", "synth bass", "latin percussion"),
        ("sensual", "festive", "confident"),
    ),
    "k-pop": GenreProfile(
        100,
        130,
        _FOUR,
        ("synths", "punchy drums", "bright piano", "bass"),
        ("bright", "energetic", "catchy"),
    ),
    "disco": GenreProfile(
        110,
        125,
        _FOUR,
        ("four on the floor kick", "funky bass", "strings", "wah guitar"),
        ("groovy", "joyful", "glamorous"),
    ),
    "funk": GenreProfile(
        95,
        120,
        _FOUR,
        ("slap bass", "wah guitar", "horns", "tight drums"),
        ("groovy", "playful", "confident"),
        JAZZ_KEYS,
    ),
    "soul": GenreProfile(
        70,
        100,
        _FOUR,
        ("organ", "horns", "electric piano", "bass"),
        ("soulful", "warm", "heartfelt"),
        JAZZ_KEYS,
    ),
    "r&b": GenreProfile(
        65,
        95,
        _FOUR,
        ("electric piano", "smooth bass", "soft drums"),
        ("smooth", "sensual", "intimate"),
    ),
    "gospel": GenreProfile(
        70,
        110,
        ("4/4", "6/8"),
        ("organ", "choir", "piano", "hand claps"),
        ("uplifting", "joyful", "powerful"),
    ),
    "punk": GenreProfile(
        160,
        200,
        _FOUR,
        ("distorted guitars", "fast drums", "bass guitar"),
        ("rebellious", "energetic", "raw"),
        GUITAR_KEYS,
    ),
    "metal": GenreProfile(
        120,
        180,
        _FOUR,
        ("heavy guitars", "double kick drums", "bass guitar"),
        ("aggressive", "dark", "powerful"),
        GUITAR_KEYS,
    ),
    "grunge": GenreProfile(
        100,
        130,
        _FOUR,
        ("distorted guitars", "heavy drums", "bass guitar"),
        ("moody", "raw", "brooding"),
        GUITAR_KEYS,
    ),
    "house": GenreProfile(
        120,
        128,
        _FOUR,
        ("four on the floor kick", "synth chords", "deep bass"),
        ("euphoric", "groovy", "uplifting"),
    ),
    "techno": GenreProfile(
        125,
        140,
        _FOUR,
        ("driving kick", "acid synth", "hypnotic percussion"),
        ("hypnotic", "dark", "driving"),
    ),
    "trance": GenreProfile(
        130,
        140,
        _FOUR,
        ("supersaw synths", "driving kick", "arpeggiator"),
        ("euphoric", "uplifting", "soaring"),
    ),
    "edm": GenreProfile(
        120,
        130,
        _FOUR,
        ("synth leads", "big drops", "punchy kick"),
        ("euphoric", "energetic", "festive"),
    ),
    "ambient": GenreProfile(60, 80, _FOUR, ("pads", "field recordings", "soft piano"), ("calm", "dreamy", "spacious")),
    "jazz": GenreProfile(
        90,
        140,
        ("4/4", "3/4"),
        ("upright bass", "brushed drums", "saxophone", "piano"),
        ("smooth", "late-night", "warm"),
        JAZZ_KEYS,
    ),
    "blues": GenreProfile(
        70,
        100,
        ("4/4", "6/8"),
        ("slide guitar", "harmonica", "shuffle drums"),
        ("soulful", "gritty", "melancholic"),
        GUITAR_KEYS,
    ),
    "bluegrass": GenreProfile(
        100,
        140,
        ("4/4", "2/4"),
        ("banjo", "fiddle", "mandolin", "upright bass"),
        ("lively", "rustic", "joyful"),
        GUITAR_KEYS,
    ),
    "country": GenreProfile(
        90,
        120,
        ("4/4", "3/4"),
        ("pedal steel", "acoustic guitar", "fiddle"),
        ("heartfelt", "warm", "nostalgic"),
        GUITAR_KEYS,
    ),
    "folk": GenreProfile(
        80,
        120,
        ("4/4", "3/4", "6/8"),
        ("acoustic guitar", "fiddle", "hand claps", "mandolin"),
        ("warm", "nostalgic", "heartfelt"),
        GUITAR_KEYS,
    ),
    "chanson": GenreProfile(
        80,
        110,
        ("4/4", "3/4"),
        ("accordion", "piano", "upright bass"),
        ("wistful", "romantic", "poetic"),
    ),
    "reggae": GenreProfile(70, 90, _FOUR, ("offbeat guitar", "bass", "organ"), ("laid-back", "sunny", "positive")),
    "latin": GenreProfile(90, 110, _FOUR, ("nylon guitar", "congas", "brass"), ("passionate", "festive", "sunny")),
    "salsa": GenreProfile(
        160,
        200,
        _FOUR,
        ("piano montuno", "congas", "timbales", "brass"),
        ("festive", "passionate", "lively"),
    ),
    "samba": GenreProfile(95, 105, ("2/4",), ("surdo", "cavaquinho", "tamborim"), ("festive", "sunny", "joyful")),
    "tango": GenreProfile(
        110,
        130,
        ("2/4", "4/4"),
        ("bandoneon", "violin", "piano"),
        ("passionate", "dramatic", "melancholic"),
    ),
    "flamenco": GenreProfile(
        90,
        130,
        ("3/4", "4/4"),
        ("flamenco guitar", "hand claps", "cajon"),
        ("passionate", "intense", "dramatic"),
    ),
    "classical": GenreProfile(60, 120, ("4/4", "3/4"), ("string quartet", "piano"), ("elegant", "serene", "dramatic")),
    "orchestral": GenreProfile(
        60, 120, ("4/4", "3/4"), ("strings", "brass", "timpani"), ("epic", "dramatic", "soaring")
    ),
    "ballad": GenreProfile(
        60,
        80,
        ("4/4", "6/8"),
        ("piano", "strings", "soft drums"),
        ("tender", "heartfelt", "melancholic"),
    ),
    "indie": GenreProfile(
        100,
        130,
        _FOUR,
        ("jangly guitars", "live drums", "bass guitar"),
        ("bittersweet", "dreamy", "warm"),
        GUITAR_KEYS,
    ),
    "rock": GenreProfile(
        110,
        150,
        _FOUR,
        ("electric guitars", "live drums", "bass guitar"),
        ("energetic", "rebellious", "powerful"),
        GUITAR_KEYS,
    ),
    "pop": GenreProfile(
        100,
        124,
        _FOUR,
        ("synths", "punchy drums", "bright piano", "bass"),
        ("bright", "uplifting", "catchy"),
    ),
}
_DEFAULT = GenreProfile(90, 120, _FOUR, ("piano", "guitar", "drums", "bass"))
#: The genre words the profiles know, for suggestions (e.g. command autocomplete).
GENRES: tuple[str, ...] = tuple(word for word in _GENRES if word not in ("lo-fi", "hip-hop"))


def genre_profile(genre: str) -> GenreProfile:
    """The profile of the first known genre word in `genre`, else a neutral one."""
    lowered = genre.lower()
    for word, profile in _GENRES.items():
        if word in lowered:
            return profile
    return _DEFAULT
