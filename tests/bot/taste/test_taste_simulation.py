"""The station learns a scripted audience's taste: a simulation over 40 auto songs.

The real station takes each auto job (with the lean the real taste code
computes from the real SQLite store), the real template songwriter writes
it, and a scripted audience reacts: two listeners press 👍 on songs with
female vocals, and everyone skips songs with vinyl crackle in their first
tenth. No audio is made: each track is a small file, played by the store's
clock. The margins come from the run's own numbers: the template's shares
without any taste (400 songs), and the binomial spread for the run's sizes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.station import StationConfig
from bot.station.manager import StationManager
from bot.store import Store
from bot.taste.features import caption_tags
from bot.taste.profile import EXPLORE_SHARE, explores
from engine.songwriter.cleanup import DurationRange
from engine.songwriter.prompt import make_brief
from engine.songwriter.template import template_spec
from engine.songwriter.writer import Songwriter, SongwriterConfig
from engine.spec import StationStyle, Track
from engine.worker.client import WorkerClient
from tests.support.radio_helpers import radio_settings, template_worker

GUILD = 77
GENRE = "lofi hip hop"  # template instruments: rhodes piano, vinyl crackle, soft drums
LIKED, DISLIKED = "female vocals", "vinyl crackle"
SONGS, EARLY, LATE = 40, 10, 20
LISTENERS = (501, 502)


@dataclass
class Clock:
    now: float = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Run:
    tags: list[list[str]] = field(default_factory=list)
    explored: list[bool] = field(default_factory=list)
    leaned: list[bool] = field(default_factory=list)

    def share(self, tag: str, songs: slice) -> tuple[float, int]:
        chosen = self.tags[songs]
        return sum(tag in tags for tags in chosen) / len(chosen), len(chosen)


def baseline(tag: str, songs: int = 400) -> float:
    """The share of `tag` in the template's songs for this station with no taste at all."""
    style = StationStyle(genre=GENRE)
    found = 0
    for seed in range(songs):
        spec = template_spec(make_brief("", style, duration=60), DurationRange(40, 60), seed)
        found += tag in caption_tags(spec.caption)
    return found / songs


def spread(p: float, n: int) -> float:
    """Three binomial standard deviations of a share `p` over `n` songs."""
    return 3 * math.sqrt(p * (1 - p) / n)


@pytest.mark.asyncio
async def test_auto_songs_lean_to_what_the_audience_likes(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path / "radio.sqlite3", clock=clock)
    settings = radio_settings(tmp_path, tmp_path / "no-checkpoint")
    # The real manager and station; the worker is never started: this test writes and
    # "plays" each song itself, so only the taste loop runs.
    manager = StationManager(store, WorkerClient(template_worker(settings)), StationConfig(buffer_size=1))
    station = await manager.add_station(GUILD)
    await station.set_style(genre=GENRE)
    writer = Songwriter(SongwriterConfig(model=None, models_dir=tmp_path))
    rng = random.Random(5)
    run = Run()
    for number in range(SONGS):
        # Auto-fill as an on-air station with listeners queues it (Station.top_up).
        store.enqueue_auto(GUILD)
        taken = await station.take_job()
        assert taken is not None, f"no auto job queued before song {number}"
        job, song = taken
        spec = writer.compose(
            song.theme,
            song.style,
            duration=song.duration,
            seed=rng.randrange(2**32),
            recent=song.recent,
        ).spec
        path = tmp_path / f"{number}.ogg"
        path.write_bytes(b"OggS" + bytes(64))
        track = Track(
            path=str(path),
            spec=spec,
            duration=float(spec.duration),
            sample_rate=48000,
            seed=spec.seed or 0,
            timings={"text": 0.01},
            peak_memory_mb=None,
            settings={},
        )
        record = store.add_track(GUILD, track, job_id=job.id, generation_seconds=1.0)
        play = store.start_playing(record.id)
        tags = caption_tags(spec.caption)
        if DISLIKED in tags:  # skipped in its first tenth
            clock.now += spec.duration * 0.1
            store.finish_playing(play.id, skipped=True)
        else:
            if LIKED in tags:
                for listener in LISTENERS:
                    store.react(GUILD, record.id, listener, 1)
            clock.now += spec.duration
            store.finish_playing(play.id)
        clock.now += 5
        run.tags.append(tags)
        run.explored.append(explores(job.id))
        run.leaned.append(song.style.lean is not None)
    store.close()

    late = slice(SONGS - LATE, SONGS)
    liked_before, n_early = run.share(LIKED, slice(0, EARLY))
    liked_after, n_late = run.share(LIKED, late)
    disliked_before, _ = run.share(DISLIKED, slice(0, EARLY))
    disliked_after, _ = run.share(DISLIKED, late)
    p_liked, p_disliked = baseline(LIKED), baseline(DISLIKED)
    print(
        f"{LIKED}: {p_liked:.2f} without taste, {liked_before:.2f} in the first {n_early}, "
        f"{liked_after:.2f} in the last {n_late}; {DISLIKED}: {p_disliked:.2f}, "
        f"{disliked_before:.2f}, {disliked_after:.2f}; explored "
        f"{sum(run.explored)}/{SONGS}; the taste formed at song {run.leaned.index(True)}"
    )

    # The liked tag rises clearly above what the songwriter writes without a taste,
    # the disliked one falls clearly below it, and both moved since the start.
    assert liked_after >= p_liked + spread(p_liked, n_late)
    assert disliked_after <= p_disliked - spread(p_disliked, n_late)
    assert liked_after > liked_before and disliked_after < disliked_before
    # The exploring share is kept: about one song in five is written without the
    # taste, and those songs really are written without it.
    explored = sum(run.explored) / SONGS
    assert abs(explored - EXPLORE_SHARE) <= spread(EXPLORE_SHARE, SONGS)
    assert not any(lean for lean, ex in zip(run.leaned, run.explored, strict=True) if ex)
    # The taste forms before the late songs (whose shares are measured above), and from
    # then on every song that does not explore leans to it.
    formed = run.leaned.index(True)
    assert formed < SONGS - LATE, f"the taste formed only at song {formed}"
    assert all(lean or ex for lean, ex in zip(run.leaned[formed:], run.explored[formed:], strict=True))
