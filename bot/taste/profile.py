"""A server's taste: what its listeners like, learnt from how they react to songs.

Evidence, per song the station made (uploads are not counted):

- 👍 on the now-playing message: +1 per listener; 👎: -1;
- a skip: -2 at the very start, less the later it comes (-2 x the share of the
  song left); a skip in the first third is an *early* skip;
- a replay that was played to its end (a DJ put it back, or the library
  replay while the GPU was busy): +0.5;
- the song was a listener's request: +1 (that is what they asked for).

A song's *signal* is the sum, bounded to -3..+3 so one crowded room cannot
outweigh everything else. Each song counts less the older it is: half after
`HALF_LIFE_SONGS` newer songs and again half after `HALF_LIFE_DAYS` days,
and only the latest `WINDOW` songs are read. Evidence from before a reset
(`/radio_settings taste: reset`) is not counted.

Every song has features (bot.taste.features: caption tags, tempo band, key
mode, language, adapter). A feature's *score* is what it adds to a song's
signal, found by one weighted ridge regression of the songs' signals on all
their features at once (weights: the decay above; `RIDGE` pulls features with
few recent songs towards 0). Fitting all features together gives little
credit to a feature that only came along with a liked or skipped one, and a
liked feature stays liked once most songs have it. A feature in every song
(the station's genre) says nothing and is left out, and so is a feature of a
single song. `/radio_taste` shows the score with the evidence behind it
("female vocals +1.0 · 9 songs: 14 likes, 1 early skip").

The lean for an auto song (`TasteLean`, engine.spec) takes the clearest
features, at least `MIN_SONGS` songs and a score of at least `LEAN_SCORE`
either way: up to 3 preferred tags, up to 6 avoided tags, a preferred tempo
band and avoided ones, a key mode. Never the station's own genre or style
words (the genre of the station stays), never a foreign genre word as a
preference. One song in five (`EXPLORE_SHARE`, chosen by the job's id) has
no lean, so the station keeps trying what it has not learnt about.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bot.taste.features import TAG_KINDS, Feature, band_of, normal_tag, song_features
from engine.spec import (
    MAX_LEAN_AVOID,
    MAX_LEAN_BANDS,
    MAX_LEAN_PREFER,
    BpmBand,
    SongSpec,
    TasteLean,
)

if TYPE_CHECKING:  # the store imports this package: annotations only
    from bot.store import GuildSettings

LIKE, DISLIKE, REQUEST, REPLAYED = 1.0, -1.0, 1.0, 0.5
SKIP = 2.0  # a skip at the very start; later skips count less
EARLY_SKIP = 1 / 3  # a skip before this share of the song is an early one
SONG_BOUND = 3.0
HALF_LIFE_SONGS, HALF_LIFE_DAYS = 50, 14.0
WINDOW = 200
RIDGE = 2.0  # pulls scores of features with few (recent) songs towards 0
LEAN_SCORE, MIN_SONGS = 0.5, 2
EXPLORE_SHARE = 0.2
SHOWN = 5  # likes and dislikes each in /radio_taste


@dataclass(frozen=True)
class PlayEvidence:
    """One play of a song: how it ended and how much of it played."""

    source: str  # fresh or replay
    outcome: str | None  # finished, skipped, interrupted; None while it plays
    seconds: float  # how long it played

    def signal(self, duration: float) -> tuple[float, str | None]:
        """Its part of the song's signal, and what it counts as in the evidence."""
        if self.outcome == "skipped":
            played = min(1.0, max(0.0, self.seconds / duration)) if duration > 0 else 1.0
            kind = "early skip" if played < EARLY_SKIP else "late skip"
            return -SKIP * (1 - played), kind
        if self.outcome == "finished" and self.source == "replay":
            return REPLAYED, "replay"
        return 0.0, None


@dataclass(frozen=True)
class SongEvidence:
    """What the store knows of one song's reception (see `Store.taste_evidence`)."""

    track_id: int
    spec: SongSpec
    duration: float
    adapter: str | None
    requested: bool
    likes: int
    dislikes: int
    plays: tuple[PlayEvidence, ...]
    at: float  # the latest evidence, seconds since the epoch

    def counts(self) -> dict[str, int]:
        """The evidence in words: {"like": 2, "early skip": 1, ...}."""
        found = {"like": self.likes, "dislike": self.dislikes, "request": int(self.requested)}
        for play in self.plays:
            kind = play.signal(self.duration)[1]
            if kind is not None:
                found[kind] = found.get(kind, 0) + 1
        return {kind: n for kind, n in found.items() if n}

    def signal(self) -> float:
        total = LIKE * self.likes + DISLIKE * self.dislikes + (REQUEST if self.requested else 0)
        total += sum(play.signal(self.duration)[0] for play in self.plays)
        return max(-SONG_BOUND, min(SONG_BOUND, total))


@dataclass(frozen=True)
class FeatureScore:
    feature: Feature
    score: float  # what it adds to a song's signal; see the module docstring
    songs: int
    evidence: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TasteProfile:
    """The scored features of a station, best first; `songs` is how many songs counted."""

    scores: tuple[FeatureScore, ...]
    songs: int

    @property
    def likes(self) -> list[FeatureScore]:
        return [s for s in self.scores if s.score >= LEAN_SCORE and s.songs >= MIN_SONGS]

    @property
    def dislikes(self) -> list[FeatureScore]:
        found = [s for s in self.scores if s.score <= -LEAN_SCORE and s.songs >= MIN_SONGS]
        return sorted(found, key=lambda s: s.score)


def song_weight(rank: int, age_seconds: float) -> float:
    """How much a song counts: `rank` newer songs and `age_seconds` after its evidence."""
    days = max(0.0, age_seconds) / 86400
    return 0.5 ** (rank / HALF_LIFE_SONGS) * 0.5 ** (days / HALF_LIFE_DAYS)


def build_profile(evidence: Sequence[SongEvidence], now: float) -> TasteProfile:
    """Score the features of the songs in `evidence` (newest first): see the module
    docstring. Features of a single song are left out: one song says too little."""
    songs = evidence[:WINDOW]
    features = [song_features(song.spec, song.adapter) for song in songs]
    counts: dict[Feature, int] = {}
    for found in features:
        for feature in found:
            counts[feature] = counts.get(feature, 0) + 1
    # A feature in every song (the station's genre) cannot be told apart from the rest.
    scored = sorted(f for f, n in counts.items() if MIN_SONGS <= n < len(songs))
    if not scored:
        return TasteProfile((), len(songs))
    index = {feature: column for column, feature in enumerate(scored)}
    x = np.zeros((len(songs), len(scored)))
    for row, found in enumerate(features):
        for feature in found:
            if feature in index:
                x[row, index[feature]] = 1.0
    signal = np.array([song.signal() for song in songs])
    weight = np.array([song_weight(rank, now - song.at) for rank, song in enumerate(songs)])
    beta = _ridge(x, signal, weight)
    scores = []
    for feature, value in zip(scored, beta, strict=True):
        evidence_counts: dict[str, int] = {}
        for song, found in zip(songs, features, strict=True):
            if feature in found:
                for kind, n in song.counts().items():
                    evidence_counts[kind] = evidence_counts.get(kind, 0) + n
        score = float(max(-SONG_BOUND, min(SONG_BOUND, value)))
        scores.append(FeatureScore(feature, score, counts[feature], evidence_counts))
    scores.sort(key=lambda s: (-s.score, s.feature))
    return TasteProfile(tuple(scores), len(songs))


def _ridge(x: np.ndarray, signal: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted ridge regression of the signals on the features, with a free intercept:
    each feature's share of the songs' reception, all features fitted at once."""
    total = weight.sum()
    x = x - (weight @ x) / total
    y = signal - (weight @ signal) / total
    gram = x.T @ (x * weight[:, None]) + RIDGE * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ (weight * y))


def lean_from(profile: TasteProfile, settings: GuildSettings) -> TasteLean | None:
    """The lean for the station's next auto song, or None when nothing is clear yet."""
    own = {normal_tag(word) for word in (settings.genre, *settings.mood.split(","))}
    own.discard("")

    def tag_ok(score: FeatureScore, liked: bool) -> bool:
        feature = score.feature
        if feature.kind not in TAG_KINDS or feature.value in own:
            return False
        return not (liked and feature.kind == "genre")  # never pull towards another genre

    prefer = [s.feature.value for s in profile.likes if tag_ok(s, True)][:MAX_LEAN_PREFER]
    avoid = [s.feature.value for s in profile.dislikes if tag_ok(s, False)][:MAX_LEAN_AVOID]
    liked_bands = [band_of(s.feature) for s in profile.likes if s.feature.kind == "tempo"]
    avoided = [band_of(s.feature) for s in profile.dislikes if s.feature.kind == "tempo"]
    modes = [s.feature.value.split()[0] for s in profile.likes if s.feature.kind == "key"]
    lean = TasteLean(
        prefer=tuple(prefer),
        avoid=tuple(avoid),
        bpm=BpmBand(low=liked_bands[0][0], high=liked_bands[0][1]) if liked_bands else None,
        avoid_bpm=tuple(BpmBand(low=b[0], high=b[1]) for b in avoided if b)[:MAX_LEAN_BANDS],
        mode=modes[0] if modes else None,  # type: ignore[arg-type]
    )
    return None if lean.empty else lean


def explores(job_id: int) -> bool:
    """Whether auto job `job_id` is one of the songs that ignore the taste (1 in 5)."""
    return random.Random(f"taste-explore-{job_id}").random() < EXPLORE_SHARE
