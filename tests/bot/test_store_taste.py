"""Reactions, the taste's evidence, favourites and reception in the real SQLite store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.favorites import ReplayPicker
from bot.store import InvalidValueError, NotFoundError, StateError, Store
from bot.store.migrations import MIGRATIONS, migrate
from engine.spec import SongSpec, Track

GUILD, OTHER = 1001, 2002
A, B, C = 11, 22, 33


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    s = Store(tmp_path / "radio.sqlite3", clock=clock)
    s.ensure_guild(GUILD)
    s.ensure_guild(OTHER)
    yield s
    s.close()


def made(
    store: Store,
    folder: Path,
    title: str,
    caption: str = "pop, synths",
    *,
    guild: int = GUILD,
    request: bool = False,
    size: int = 100,
):
    """A song the station made (auto or a request), buffered."""
    if request:
        job = store.enqueue_request(
            guild,
            requester_id=A,
            requester_name="ann",
            theme="x",
            max_per_user=50,
            max_per_guild=50,
        )
    else:
        job = store.enqueue_auto(guild)
    store.next_job(guild)
    path = folder / f"{title}.ogg"
    path.write_bytes(b"\0" * size)
    spec = SongSpec(title=title, caption=caption, bpm=100, key="A minor", duration=60)
    track = Track(
        path=str(path),
        spec=spec,
        duration=60.0,
        sample_rate=48000,
        seed=3,
        timings={"text": 1.0},
        peak_memory_mb=None,
        settings={},
    )
    return store.add_track(guild, track, job_id=job.id)


def play(store: Store, clock: Clock, record, seconds: float = 60.0, *, skipped: bool = False):
    started = store.start_playing(record.id)
    clock.now += seconds
    return store.finish_playing(started.id, skipped=skipped)


def test_one_reaction_per_listener_per_song_on_played_songs_of_the_guild(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    song = made(store, tmp_path, "one")
    with pytest.raises(StateError, match="has not been played here yet"):
        store.react(GUILD, song.id, A, 1)
    play(store, clock, song)
    assert store.react(GUILD, song.id, A, 1) == (tally := store.reaction_tally(song.id))
    assert (tally.likes, tally.dislikes) == (1, 0)
    again = store.react(GUILD, song.id, A, 1)
    assert (again.likes, again.previous) == (1, 1)
    switched = store.react(GUILD, song.id, A, -1)
    assert (switched.likes, switched.dislikes, switched.previous) == (0, 1, 1)
    store.react(GUILD, song.id, B, 1)
    assert store.reaction_tally(song.id).likes == 1
    with pytest.raises(NotFoundError, match="not a song of this server"):
        store.react(OTHER, song.id, C, 1)  # a forged id from another server
    with pytest.raises(NotFoundError, match="unknown song 999"):
        store.react(GUILD, 999, C, 1)
    for value in (0, 2, True, "1"):
        with pytest.raises(InvalidValueError, match=r"1 \(like\) or -1 \(dislike\)"):
            store.react(GUILD, song.id, C, value)
    with pytest.raises(InvalidValueError, match="positive integer id"):
        store.react(GUILD, 2**63, C, 1)


def test_evidence_counts_likes_skips_replays_and_requests_since_the_reset(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    liked = made(store, tmp_path, "liked")
    play(store, clock, liked)
    store.react(GUILD, liked.id, A, 1)
    store.react(GUILD, liked.id, B, 1)
    early = made(store, tmp_path, "early")
    play(store, clock, early, 6, skipped=True)
    late = made(store, tmp_path, "late")
    play(store, clock, late, 54, skipped=True)
    asked = made(store, tmp_path, "asked", request=True)
    play(store, clock, asked)
    play(store, clock, liked)  # a replay to the end
    upload_path = tmp_path / "upload.ogg"
    upload_path.write_bytes(b"\0")
    spec = SongSpec(title="up", caption="uploaded", bpm=120, key="C major", duration=60)
    upload = store.add_track(
        GUILD,
        Track(
            path=str(upload_path),
            spec=spec,
            duration=60.0,
            sample_rate=48000,
            seed=0,
            timings={"upload": 1.0},
            peak_memory_mb=None,
            settings={},
        ),
        uploader=(A, "ann"),
    )
    play(store, clock, upload, skipped=True)

    evidence = {song.spec.title: song for song in store.taste_evidence(GUILD)}
    assert list(evidence) == ["asked", "late", "early", "liked"]  # newest first, no upload
    assert evidence["liked"].counts() == {"like": 2, "replay": 1}
    assert evidence["liked"].signal() == 2.5
    assert evidence["early"].counts() == {"early skip": 1}
    assert evidence["early"].signal() == pytest.approx(-1.8)
    assert evidence["late"].counts() == {"late skip": 1}
    assert evidence["late"].signal() == pytest.approx(-0.2)
    assert evidence["asked"].counts() == {"request": 1} and evidence["asked"].signal() == 1
    assert store.taste_evidence(OTHER) == []

    clock.now += 10
    store.update_guild_settings(GUILD, taste_since=clock.now)
    assert store.taste_evidence(GUILD, since=clock.now) == []
    assert store.taste_profile(GUILD).songs == 0
    play(store, clock, liked)
    [after] = store.taste_evidence(GUILD, since=store.guild_settings(GUILD).taste_since)
    assert after.spec.title == "liked" and after.counts() == {"replay": 1}  # likes were before


def test_favourites_are_liked_songs_kept_longest_and_put_back_on_request(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    songs = [made(store, tmp_path, name, size=1000) for name in ("a", "b", "c", "d")]
    for song in songs:
        play(store, clock, song)
    store.react(GUILD, songs[0].id, A, 1)  # a: 1 like
    for user in (A, B):
        store.react(GUILD, songs[2].id, user, 1)  # c: 2 likes
    store.react(GUILD, songs[3].id, A, -1)  # d: disliked
    store.react(GUILD, songs[1].id, A, 1)
    store.react(GUILD, songs[1].id, B, -1)  # b: even
    favorites = store.favorites(GUILD)
    assert [(f.record.title, f.likes, f.dislikes) for f in favorites] == [("c", 2, 0), ("a", 1, 0)]
    assert store.favorites(OTHER) == []

    with pytest.raises(StateError, match="'b' is not a favourite"):
        store.requeue_favorite(GUILD, songs[1].id)
    with pytest.raises(NotFoundError, match="not a song of this server"):
        store.requeue_favorite(OTHER, songs[0].id)
    back = store.requeue_favorite(GUILD, songs[0].id)
    assert back.status == "buffered" and store.buffered_tracks(GUILD) == [back]
    with pytest.raises(StateError, match="in the queue already"):
        store.requeue_favorite(GUILD, songs[0].id)
    assert store.start_playing(back.id).source == "replay"  # it was played before

    # Over the disk budget the other songs go first; favourites are kept.
    report = store.prune_tracks(budget_bytes=2500)
    assert report.pruned_tracks == [songs[1].id, songs[3].id]
    assert [f.record.title for f in store.favorites(GUILD)] == ["c", "a"]
    with pytest.raises(StateError, match="file of 'b' is gone"):
        store.played_track(GUILD, songs[1].id)
    assert store.played_track(GUILD, songs[2].id).title == "c"


def test_replay_prefers_favourites_two_in_three_and_leaves_disliked_songs_last(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    songs = [made(store, tmp_path, name) for name in "abcdef"]
    for song in songs:
        play(store, clock, song)
    store.react(GUILD, songs[1].id, A, 1)
    store.react(GUILD, songs[4].id, A, 1)
    store.react(GUILD, songs[5].id, A, -1)
    picker = ReplayPicker()
    picked = [picker.pick(store.replay_library(GUILD)).title for _ in range(9)]
    assert picked == ["b", "e", "a", "b", "e", "c", "b", "e", "d"]
    assert ReplayPicker().pick([]) is None
    only_disliked = [(songs[5], -1)]
    assert ReplayPicker().pick(only_disliked) == songs[5]  # better than silence


def test_reception_gives_like_ratio_and_skip_rate_per_window(store: Store, clock: Clock, tmp_path: Path) -> None:
    for number in range(25):
        song = made(store, tmp_path, f"s{number}")
        play(store, clock, song, skipped=number < 10)  # the first ten are skipped
        if number >= 20:
            store.react(GUILD, song.id, A, 1 if number != 24 else -1)
    newest, older = store.stats(GUILD).reception
    assert (newest.plays, newest.skipped, newest.likes, newest.dislikes) == (20, 5, 4, 1)
    assert newest.skip_rate == 0.25 and newest.like_ratio == 0.8
    assert (older.plays, older.skip_rate, older.like_ratio) == (5, 1.0, None)


def test_a_version_3_database_gains_reactions_and_the_taste_switch(tmp_path: Path) -> None:
    path = tmp_path / "radio.sqlite3"
    raw = sqlite3.connect(path, isolation_level=None)
    assert migrate(raw, [m for m in MIGRATIONS if m.version <= 3]) == [1, 2, 3]
    raw.execute(
        "INSERT INTO guild_settings VALUES (?, 'jazz', '', '', 'en', 120, 1, NULL, NULL, NULL, NULL, 0, 0, NULL, 1.0)",
        (GUILD,),
    )
    raw.close()
    with Store(path) as store:
        settings = store.guild_settings(GUILD)
        assert (settings.genre, settings.taste, settings.taste_since) == ("jazz", True, 0.0)
        store.update_guild_settings(GUILD, taste=False)
        with pytest.raises(InvalidValueError, match="taste 'no': allowed is true or false"):
            store.update_guild_settings(GUILD, taste="no")
    with Store(path) as store:
        assert store.guild_settings(GUILD).taste is False
