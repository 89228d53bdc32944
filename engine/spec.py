"""The plain data that flows between songwriter, engine, worker and station.

`SongSpec` is what the songwriter writes and the engine sings. It validates
itself, so an invalid spec cannot exist: the songwriter clamps and cleans
model output *before* building one. Both types round-trip through JSON, so
they can cross process (and later machine) boundaries unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

NOTES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: The 24 major/minor keys, in ACE-Step's `keyscale` spelling ("F# minor").
KEYS = tuple(f"{note} {mode}" for mode in ("major", "minor") for note in NOTES)
#: Time signatures the model knows; ACE-Step's prompt writes the beats per bar.
TIME_SIGNATURES = {"2/4": "2", "3/4": "3", "4/4": "4", "6/8": "6"}
#: Vocal languages ACE-Step 1.5 was trained on (ISO 639-1).
LANGUAGES = (
    "en",
    "zh",
    "ja",
    "ko",
    "es",
    "fr",
    "de",
    "it",
    "pt",
    "ru",
    "nl",
    "pl",
    "tr",
    "sv",
    "vi",
    "th",
    "id",
    "ar",
    "hi",
    "uk",
    "cs",
    "fi",
    "el",
    "he",
    "hu",
    "ro",
)

#: An instrumental, as upstream ACE-Step encodes one: these lyrics, language "unknown".
INSTRUMENTAL_LYRICS, INSTRUMENTAL_LANGUAGE = "[Instrumental]", "unknown"

#: Lyrics ratings: "clean" keeps swearing, sex, drugs, slurs and self-harm out
#: (engine.songwriter.content_rating); "explicit" does not.
RATINGS = ("clean", "explicit")
Rating = Literal["clean", "explicit"]

MIN_BPM, MAX_BPM = 40, 220
MIN_DURATION, MAX_DURATION = 10, 600
MAX_TITLE, MAX_CAPTION, MAX_LYRICS = 80, 512, 4000

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _check_language(value: str) -> str:
    if value not in LANGUAGES:
        raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
    return value


def _check_spec_language(value: str) -> str:
    if value != INSTRUMENTAL_LANGUAGE:
        _check_language(value)
    return value


#: A vocal language code from `LANGUAGES`.
Language = Annotated[str, AfterValidator(_check_language)]
#: What a song's lyrics are in: a vocal language, or "unknown" for an instrumental.
SpecLanguage = Annotated[str, AfterValidator(_check_spec_language)]


class SongSpec(BaseModel):
    """One song to sing. Every field is checked; see module docstring.

    An instrumental has the lyrics `[Instrumental]` and the language `unknown`,
    as upstream ACE-Step writes one (an empty lyric is a condition its model
    rarely saw); empty lyrics, as older specs have them, are read as that.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field(min_length=1, max_length=MAX_TITLE)
    caption: str = Field(min_length=1, max_length=MAX_CAPTION)
    lyrics: str = Field(default="", max_length=MAX_LYRICS)
    bpm: int = Field(ge=MIN_BPM, le=MAX_BPM)
    key: str
    time_signature: str = "4/4"
    duration: int = Field(ge=MIN_DURATION, le=MAX_DURATION)
    language: SpecLanguage = "en"
    seed: int | None = Field(default=None, ge=0, lt=2**63)

    @model_validator(mode="before")
    @classmethod
    def _instrumental_as_upstream(cls, data: Any) -> Any:
        if isinstance(data, dict):
            lyrics = data.get("lyrics", "")
            if isinstance(lyrics, str) and lyrics.strip() in ("", INSTRUMENTAL_LYRICS):
                data = {**data, "lyrics": INSTRUMENTAL_LYRICS, "language": INSTRUMENTAL_LANGUAGE}
        return data

    @field_validator("title", "caption")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if _CONTROL.search(value) or "\n" in value:
            raise ValueError("must be one line without control characters")
        return value

    @field_validator("lyrics")
    @classmethod
    def _printable_lyrics(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("key")
    @classmethod
    def _known_key(cls, value: str) -> str:
        if value not in KEYS:
            raise ValueError(f"must be one of the 24 keys, e.g. 'C major' or 'F# minor'; got {value!r}")
        return value

    @field_validator("time_signature")
    @classmethod
    def _known_time_signature(cls, value: str) -> str:
        if value not in TIME_SIGNATURES:
            raise ValueError(f"must be one of {', '.join(TIME_SIGNATURES)}")
        return value

    @property
    def instrumental(self) -> bool:
        return self.lyrics == INSTRUMENTAL_LYRICS

    @property
    def beats_per_bar(self) -> str:
        """The `timesignature` value ACE-Step's prompt expects ("4" for 4/4)."""
        return TIME_SIGNATURES[self.time_signature]


class Track(BaseModel):
    """A finished song: where its audio is and how it was made."""

    model_config = ConfigDict(frozen=True)

    path: str
    spec: SongSpec
    duration: float = Field(description="seconds of audio in the file")
    sample_rate: int
    seed: int
    timings: dict[str, float] = Field(description="seconds per stage: text, dit, vae, encode")
    peak_memory_mb: float | None = Field(description="peak GPU memory, None on the CPU")
    settings: dict[str, object] = Field(description="the generation settings actually used")
    warnings: tuple[str, ...] = ()


#: A lean holds at most this many preferred and avoided tags and avoided bpm bands.
MAX_LEAN_PREFER, MAX_LEAN_AVOID, MAX_LEAN_TAG, MAX_LEAN_BANDS = 3, 6, 40, 4
LeanTag = Annotated[str, Field(min_length=1, max_length=MAX_LEAN_TAG)]
Bpm = Annotated[int, Field(ge=MIN_BPM, le=MAX_BPM)]


class BpmBand(BaseModel):
    """An inclusive bpm range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: Bpm
    high: Bpm

    @model_validator(mode="after")
    def _ordered(self) -> BpmBand:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class TasteLean(BaseModel):
    """What an auto song leans to and away from, learnt from the station's listeners
    (bot.taste.profile); `engine.songwriter.taste_lean` applies it. Empty fields change nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefer: tuple[LeanTag, ...] = Field(default=(), max_length=MAX_LEAN_PREFER)
    avoid: tuple[LeanTag, ...] = Field(default=(), max_length=MAX_LEAN_AVOID)
    bpm: BpmBand | None = None
    avoid_bpm: tuple[BpmBand, ...] = Field(default=(), max_length=MAX_LEAN_BANDS)
    mode: Literal["major", "minor"] | None = None

    @property
    def empty(self) -> bool:
        return not (self.prefer or self.avoid or self.bpm or self.avoid_bpm or self.mode)


class StationStyle(BaseModel):
    """What a station sounds like; the songwriter writes within it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    genre: str = Field(default="pop", max_length=100)
    theme: str = Field(default="", max_length=200)
    mood: str = Field(default="", max_length=100)
    language: Language = "en"
    max_duration: int = Field(default=60, ge=MIN_DURATION, le=MAX_DURATION)
    #: The listeners' taste for auto songs (None: none learnt, off, or this song explores).
    lean: TasteLean | None = None
    #: LYRICS_RATING, or the station's own (see `RATINGS`).
    rating: Rating = "clean"
