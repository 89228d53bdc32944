"""The features of a song that the station's taste is scored on.

A song is described by what a listener could hear and a DJ could name:

- its caption's tags (the songwriter's words for the sound), each sorted into
  genre words, instruments, vocals, mood or another tag;
- its tempo band (20 bpm wide: "80-99 bpm") and key mode ("minor key");
- its language ("sung in ja", or "instrumental") and the adapter it was sung with.

Tags are model output: they are cleaned (`sanitize_text`), folded to lower
case, and long phrases are left out (more than four words or 40 characters:
those are what a song is about, not how it sounds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from engine.songwriter.genres import GENRES
from engine.spec import SongSpec
from engine.text_safety import sanitize_text

FeatureKind = Literal["genre", "instrument", "vocals", "mood", "tag", "tempo", "key", "language", "adapter"]
#: Kinds that are words of the caption (the songwriter can choose them).
TAG_KINDS = ("genre", "instrument", "vocals", "mood", "tag")
MAX_TAG_CHARS, MAX_TAG_WORDS, MAX_TAGS = 40, 4, 12
BAND = 20  # bpm per tempo band

_VOCALS = re.compile(r"\b(vocals?|voices?|choir|singers?|singing|rap|harmon(?:y|ies)|duet)\b")
_INSTRUMENTS = re.compile(
    r"\b(piano|rhodes|keys|guitars?|bass|drums?|kick|snare|hi-?hats?|synths?|synthesizers?|"
    r"strings|violins?|cello|viola|sax(?:ophone)?|trumpets?|horns|brass|organ|flute|"
    r"accordion|harmonica|banjo|ukulele|harp|pads?|808s?|percussion|congas|bongos|tuba|"
    r"clarinet|fiddle|pedal steel|quartet|orchestra|breakbeats?|claps|bells|marimba|"
    r"vibraphone|mandolin|sitar|koto|shamisen|tabla|beat|arpeggios?|crackle|field recordings)\b"
)
_MOODS = re.compile(
    r"\b(calm|dreamy|energetic|melancholic|melancholy|happy|sad|dark|uplifting|romantic|"
    r"nostalgic|chill|mellow|aggressive|playful|humorous|warm|gentle|driving|hopeful|moody|"
    r"epic|peaceful|euphoric|groovy|relaxed|intense|bright|soft|tender|angry|joyful|eerie|"
    r"haunting|wistful|bittersweet|laid-back|cozy|lonely|triumphant|festive|youthful|night)\b"
)
_GENRE_WORDS = re.compile(r"\b(" + "|".join(re.escape(g) for g in GENRES) + r")\b")


@dataclass(frozen=True, order=True)
class Feature:
    """One scored property of a song: its kind and its value ("instrument", "rhodes piano")."""

    kind: FeatureKind
    value: str

    @property
    def label(self) -> str:
        """How `/radio_taste` names it (still untrusted: the caller escapes it)."""
        if self.kind == "language":
            return "instrumental" if self.value == "instrumental" else f"sung in {self.value}"
        if self.kind == "adapter":
            return f"adapter {self.value}"
        return self.value


def normal_tag(tag: str) -> str:
    """A caption tag as the taste compares it: clean, one space between words, lower case."""
    return " ".join(sanitize_text(tag, 100).casefold().split())


def tag_kind(tag: str) -> FeatureKind:
    """Which kind of word a (normalised) caption tag is."""
    if _VOCALS.search(tag):
        return "vocals"
    if _GENRE_WORDS.search(tag):
        return "genre"
    if _INSTRUMENTS.search(tag):
        return "instrument"
    if _MOODS.search(tag):
        return "mood"
    return "tag"


def caption_tags(caption: str) -> list[str]:
    """The caption's sound tags, normalised, without long phrases and auto-mode topics."""
    tags: list[str] = []
    for raw in caption.split(","):
        tag = normal_tag(raw)
        too_long = len(tag) > MAX_TAG_CHARS or len(tag.split()) > MAX_TAG_WORDS
        if tag and not too_long and tag not in tags:
            tags.append(tag)
    return tags[:MAX_TAGS]


def tempo_band(bpm: int) -> tuple[int, int]:
    """The 20-bpm band of `bpm`: 87 -> (80, 99); the last band ends at 220."""
    low = max(40, min(200, bpm - bpm % BAND))
    return low, 220 if low == 200 else low + BAND - 1


def song_features(spec: SongSpec, adapter: str | None = None) -> frozenset[Feature]:
    """Every feature of one song (see the module docstring)."""
    features = {Feature(tag_kind(tag), tag) for tag in caption_tags(spec.caption)}
    low, high = tempo_band(spec.bpm)
    features.add(Feature("tempo", f"{low}-{high} bpm"))
    features.add(Feature("key", f"{spec.key.split()[-1]} key"))
    features.add(Feature("language", "instrumental" if spec.instrumental else spec.language))
    if adapter:
        features.add(Feature("adapter", sanitize_text(adapter, 64)))
    return frozenset(features)


def band_of(feature: Feature) -> tuple[int, int] | None:
    """The bpm band a tempo feature names ("80-99 bpm" -> (80, 99))."""
    if feature.kind != "tempo":
        return None
    low, high = feature.value.removesuffix(" bpm").split("-")
    return int(low), int(high)
