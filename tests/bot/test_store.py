"""bot.store against a real SQLite file: schema, queue fairness, restart, pruning, stats."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from bot.settings import load_bot_settings
from bot.store import (
    InvalidValueError,
    NotFoundError,
    QueueFullError,
    SchemaError,
    StateError,
    Store,
    StoreError,
    UnknownGuildError,
)
from bot.store.migrations import LATEST_VERSION, MIGRATIONS, Migration, migrate, schema_version
from bot.store.stats import percentile
from engine.settings import SettingsError
from engine.spec import SongSpec, StationStyle, Track

GUILD = 1001
OTHER_GUILD = 2002
A, B, C, D = 11, 22, 33, 44
LIMITS = {"max_per_user": 10, "max_per_guild": 50}


def spec(title: str = "Song", duration: int = 60) -> SongSpec:
    return SongSpec(title=title, caption="lofi piano", bpm=90, key="C major", duration=duration)


def make_track(folder: Path, name: str, *, size: int = 100, duration: float = 60.0, dit: float = 8.0) -> Track:
    """A track whose audio file really exists, `size` bytes long."""
    path = folder / f"{name}.ogg"
    path.write_bytes(b"\0" * size)
    return Track(
        path=str(path),
        spec=spec(name, int(duration)),
        duration=duration,
        sample_rate=48000,
        seed=7,
        timings={"text": 1.0, "dit": dit, "vae": 1.0, "encode": 0.0},
        peak_memory_mb=None,
        settings={"steps": 8},
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "radio.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Store:
    s = Store(db_path)
    s.ensure_guild(GUILD)
    yield s
    s.close()


@pytest.fixture
def tracks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tracks"
    folder.mkdir()
    return folder


def request(store: Store, user: int, theme: str = "rain", guild: int = GUILD, **limits: int):
    return store.enqueue_request(
        guild,
        requester_id=user,
        requester_name=f"user{user}",
        theme=theme,
        **(limits or LIMITS),
    )


def drain(store: Store, guild: int = GUILD) -> list:
    """Take every queued job in order, finishing each, and return them."""
    taken = []
    while (job := store.next_job(guild)) is not None:
        taken.append(job)
        store.fail_job(job.id, "test", max_attempts=1)
    return taken


# --- schema -------------------------------------------------------------------------------------


def test_a_new_database_gets_the_latest_schema_in_wal_mode(db_path: Path) -> None:
    Store(db_path).close()
    raw = sqlite3.connect(db_path)
    assert schema_version(raw) == LATEST_VERSION == MIGRATIONS[-1].version
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"guild_settings", "jobs", "tracks", "plays", "votes", "events"} <= tables
    raw.close()


def test_foreign_keys_are_enforced(store: Store) -> None:
    with store._transaction(write=False) as db:
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(StoreError, match="FOREIGN KEY"), store._transaction(write=True) as db:
        db.execute("INSERT INTO jobs (guild_id, kind, theme, status, created_at) VALUES (999, 'auto', '', 'queued', 0)")


def test_an_older_database_is_upgraded_and_keeps_its_data(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path, isolation_level=None)
    assert migrate(raw, MIGRATIONS[:1]) == [1]
    raw.execute(
        "INSERT INTO guild_settings VALUES (?, 'jazz', 'night', '', 'en', 120, 1, NULL, NULL, NULL, NULL, 0, 0)",
        (GUILD,),
    )
    raw.execute(
        "INSERT INTO jobs (guild_id, kind, requester_id, requester_name, theme, status,"
        " created_at) VALUES (?, 'request', ?, 'ann', 'rain', 'queued', 0)",
        (GUILD, A),
    )
    raw.close()

    with Store(db_path) as store:
        assert schema_version(store._conn) == LATEST_VERSION
        assert store.guild_settings(GUILD).genre == "jazz"
        [job] = store.pending_jobs(GUILD)
        assert (job.requester_name, job.theme, job.status) == ("ann", "rain", "queued")
        store.record_underrun(GUILD)  # the table migration 2 added
        assert store.stats(GUILD).underruns == 1
        assert store.guild_settings(GUILD).lyrics_rating is None  # migration 5: LYRICS_RATING


def test_a_version_2_database_gains_the_station_adapter(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path, isolation_level=None)
    assert migrate(raw, MIGRATIONS[:2]) == [1, 2]
    raw.execute(
        "INSERT INTO guild_settings VALUES (?, 'jazz', 'night', '', 'en', 120, 1, NULL, NULL, NULL, NULL, 0, 0)",
        (GUILD,),
    )
    raw.close()
    with Store(db_path) as store:
        assert schema_version(store._conn) == LATEST_VERSION >= 3
        settings = store.guild_settings(GUILD)
        assert (settings.genre, settings.adapter, settings.adapter_scale) == ("jazz", None, 1.0)
        store.update_guild_settings(GUILD, adapter="warm-tape", adapter_scale=2)
    with Store(db_path) as store:
        settings = store.guild_settings(GUILD)
        assert (settings.adapter, settings.adapter_scale) == ("warm-tape", 2.0)
        store.update_guild_settings(GUILD, adapter=None)
        assert store.guild_settings(GUILD).adapter is None


def test_a_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    raw.close()
    with pytest.raises(SchemaError, match=f"schema version {LATEST_VERSION + 1}") as info:
        Store(db_path)
    assert f"knows versions up to {LATEST_VERSION}" in str(info.value)
    assert str(db_path) in str(info.value)


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    migrate(raw, MIGRATIONS[:1])
    broken = Migration(2, "broken", "CREATE TABLE half (a); INSERT INTO nowhere VALUES (1);")
    with pytest.raises(SchemaError, match=r"migration 2 \(broken\).*left at version 1"):
        migrate(raw, [MIGRATIONS[0], broken])
    assert schema_version(raw) == 1
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert not raw.in_transaction


def test_a_file_that_is_not_a_database_gives_a_clear_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SchemaError, match="cannot be opened as the radio's database"):
        Store(db_path)


def test_a_closed_store_says_so(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.guild_ids()


def test_from_settings_uses_data_dir_and_max_length_max(env_file: Path, tmp_path: Path) -> None:
    env_file.write_text(f"DATA_DIR={tmp_path / 'd'}\nMAX_LENGTH_MAX=240\n")
    settings = load_bot_settings()
    with Store.from_settings(settings) as store:
        assert store.path == tmp_path / "d" / "radio.sqlite3"
        assert store.ensure_guild(GUILD).max_length == 240
    assert settings.database_path.is_file()


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("TRACKS_DISK_BUDGET_MB", "-5", "from 100 to 1048576"),
        ("MAX_QUEUE_PER_USER", "0", "from 1 to 50"),
        ("MAX_QUEUE_PER_GUILD", "many", "from 1 to 500"),
    ],
)
def test_store_settings_keys_are_validated(env_file: Path, key: str, value: str, allowed: str):
    assert load_bot_settings().max_queue_per_user == 3
    env_file.write_text(f"{key}={value}\n")
    with pytest.raises(SettingsError, match=f"{key}=.*{allowed}"):
        load_bot_settings()


# --- guild settings -----------------------------------------------------------------------------


def test_guild_settings_have_defaults_and_survive_a_restart(db_path: Path) -> None:
    with Store(db_path) as store:
        fresh = store.ensure_guild(GUILD)
        assert (fresh.genre, fresh.language, fresh.max_length, fresh.auto_mode) == (
            "pop",
            "en",
            300,
            True,
        )
        store.update_guild_settings(GUILD, genre="  synthwave ", max_length=120, auto_mode=False, dj_role_id=555)
        assert store.ensure_guild(GUILD).genre == "synthwave"  # ensure_guild does not reset
    with Store(db_path) as store:
        settings = store.guild_settings(GUILD)
        assert (settings.genre, settings.max_length, settings.auto_mode) == (
            "synthwave",
            120,
            False,
        )
        assert settings.dj_role_id == 555
        assert settings.style() == StationStyle(genre="synthwave", max_duration=120)
        assert settings.lyrics_rating is None and settings.style("explicit").rating == "explicit"
        rated = store.update_guild_settings(GUILD, lyrics_rating="explicit")
        assert rated.style("clean").rating == "explicit"
        with pytest.raises(InvalidValueError, match="lyrics_rating"):
            store.update_guild_settings(GUILD, lyrics_rating="spicy")
        assert store.guild_ids() == [GUILD]


def test_a_lowered_max_length_max_caps_stored_station_limits(db_path: Path) -> None:
    with Store(db_path, max_length_max=300) as store:
        store.ensure_guild(GUILD)
        store.update_guild_settings(GUILD, max_length=280)
    with Store(db_path, max_length_max=240) as store:
        assert store.guild_settings(GUILD).max_length == 240
        with pytest.raises(InvalidValueError, match=r"length 280: allowed is .* 10 to 240"):
            store.enqueue_request(GUILD, requester_id=A, requester_name="a", theme="x", length=280, **LIMITS)
    with Store(db_path, max_length_max=300) as store:  # the guild's own choice was kept
        assert store.guild_settings(GUILD).max_length == 280


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"volume": 3}, "setting 'volume'", "one of genre, theme, mood"),
        ({"max_length": -5}, "max_length -5", "an integer from 30 to 300 seconds"),
        ({"max_length": 301}, "max_length 301", "from 30 to 300"),
        ({"max_length": "120"}, "max_length '120'", "an integer"),
        ({"language": "xx"}, "language 'xx'", "one of en, zh"),
        ({"theme": "x" * 10_000}, "theme 'xxx", "at most 200 characters, got 10000"),
        ({"genre": "   "}, "genre", "not empty"),
        ({"mood": "sad\x00"}, "mood", "without control characters"),
        ({"auto_mode": "yes"}, "auto_mode 'yes'", "true or false"),
        ({"dj_role_id": -1}, "dj_role_id -1", "a positive integer id"),
        ({"adapter": "../etc"}, "adapter '../etc'", "1-64 letters, digits"),
        ({"adapter": ".."}, "adapter '..'", "starting with a letter or digit"),
        ({"adapter": "a" * 65}, "adapter 'aaaa", "1-64 letters"),
        ({"adapter_scale": 4.5}, "adapter_scale 4.5", "a number from 0 to 4"),
        ({"adapter_scale": float("nan")}, "adapter_scale nan", "a number from 0 to 4"),
        ({"adapter_scale": True}, "adapter_scale True", "a number from 0 to 4"),
    ],
)
def test_bad_guild_settings_are_refused_with_a_clear_message(
    store: Store, changes: dict, field: str, allowed: str
) -> None:
    with pytest.raises(InvalidValueError) as info:
        store.update_guild_settings(GUILD, **changes)
    assert str(info.value).startswith(f"invalid {field}")
    assert allowed in str(info.value)


def test_a_partly_bad_update_writes_nothing(store: Store) -> None:
    with pytest.raises(InvalidValueError):
        store.update_guild_settings(GUILD, genre="jazz", max_length=5)
    assert store.guild_settings(GUILD).genre == "pop"


def test_unknown_guilds_and_ids_are_clear_errors(store: Store) -> None:
    for call in (
        lambda: store.guild_settings(999),
        lambda: store.update_guild_settings(999, genre="jazz"),
        lambda: request(store, A, guild=999),
        lambda: store.next_job(999),
        lambda: store.history(999),
        lambda: store.stats(999),
    ):
        with pytest.raises(UnknownGuildError, match="unknown guild 999: call ensure_guild"):
            call()
    with pytest.raises(InvalidValueError, match="guild_id -3: allowed is a positive integer"):
        store.ensure_guild(-3)
    with pytest.raises(NotFoundError, match="unknown job 12345"):
        store.get_job(12345)


# --- the queue ----------------------------------------------------------------------------------


def test_requests_are_served_round_robin_between_listeners(store: Store) -> None:
    for user, count in ((A, 3), (B, 1), (C, 2)):
        for i in range(count):
            request(store, user, theme=f"{user}-{i}")
    expected = [A, B, C, A, C, A]
    assert [j.requester_id for j in store.pending_jobs(GUILD)] == expected
    first_a = store.pending_jobs(GUILD)[0]
    assert store.queue_position(first_a.id) == 1
    taken = drain(store)
    assert [j.requester_id for j in taken] == expected
    assert [j.theme for j in taken if j.requester_id == A] == ["11-0", "11-1", "11-2"]
    assert store.queue_position(first_a.id) is None


def test_fairness_holds_while_the_queue_moves(store: Store) -> None:
    request(store, A)
    request(store, A)
    request(store, B)
    served = store.next_job(GUILD)  # A's first
    assert served.requester_id == A
    request(store, D)  # a newcomer joins the round being served, before A's second
    request(store, B)  # B's second: next round
    assert [j.requester_id for j in store.pending_jobs(GUILD)] == [A, B, D, A, B]
    store.add_track(GUILD, make_track(store.path.parent, "a1"), job_id=served.id)
    request(store, A)  # A was just served and has one waiting: A goes to the round after
    assert [j.requester_id for j in store.pending_jobs(GUILD)] == [B, D, A, B, A]


def test_a_newcomer_waits_for_the_round_being_served(store: Store) -> None:
    for user in (A, B, A, B, A, B):
        request(store, user)
    assert [store.next_job(GUILD).requester_id for _ in range(3)] == [A, B, A]  # round 1 begun
    request(store, C)  # after B's round-1 request, before anyone's round 2
    assert [j.requester_id for j in store.pending_jobs(GUILD) if j.status == "queued"] == [
        B,
        C,
        A,
        B,
    ]


def test_a_listener_just_served_asks_again_for_the_next_round(store: Store) -> None:
    request(store, A)
    request(store, B)
    request(store, B)
    job = store.next_job(GUILD)  # A's only request is taken (round 0) ...
    store.add_track(GUILD, make_track(store.path.parent, "a"), job_id=job.id)
    request(store, A)  # ... so A's new one is round 1, after B's round-1 request queued earlier
    assert [j.requester_id for j in store.pending_jobs(GUILD)] == [B, B, A]


def test_requests_come_before_auto_fill(store: Store) -> None:
    first_auto = store.enqueue_auto(GUILD, theme="station pick")
    store.enqueue_auto(GUILD)
    request(store, A)
    taken = drain(store)
    assert [j.kind for j in taken] == ["request", "auto", "auto"]
    assert taken[1].id == first_auto.id


def test_per_user_and_per_guild_limits(store: Store) -> None:
    for _ in range(2):
        request(store, A, max_per_user=2, max_per_guild=3)
    with pytest.raises(QueueFullError, match=r"user11 already has 2 song.*at most 2") as info:
        request(store, A, max_per_user=2, max_per_guild=3)
    assert (info.value.scope, info.value.current, info.value.limit) == ("user", 2, 2)
    request(store, B, max_per_user=2, max_per_guild=3)
    with pytest.raises(QueueFullError, match=r"already has 3 listeners' songs.*at most 3") as info:
        request(store, C, max_per_user=2, max_per_guild=3)
    assert info.value.scope == "guild"
    store.enqueue_auto(GUILD)  # auto-fill is not a request: not limited
    request(store, C, guild=GUILD, max_per_user=2, max_per_guild=4)
    # a request being made still counts, and so does a finished one until it has played
    job = store.next_job(GUILD)
    with pytest.raises(QueueFullError):
        request(store, A, max_per_user=2, max_per_guild=10)
    track = store.add_track(GUILD, make_track(store.path.parent, "done"), job_id=job.id)
    with pytest.raises(QueueFullError, match="waiting, being made or ready to play"):
        request(store, A, max_per_user=2, max_per_guild=10)
    store.finish_playing(store.start_playing(track.id).id)
    request(store, A, max_per_user=2, max_per_guild=10)
    # other guilds have their own queue
    store.ensure_guild(OTHER_GUILD)
    request(store, A, guild=OTHER_GUILD, max_per_user=2, max_per_guild=3)


def test_uploads_count_toward_the_limits_like_requests(store: Store) -> None:
    uploads = [
        store.add_track(GUILD, make_track(store.path.parent, f"up{i}"), uploader=(A, "a"), limits=(2, 3))
        for i in range(2)
    ]
    with pytest.raises(QueueFullError, match="already has 2 song"):
        store.add_track(GUILD, make_track(store.path.parent, "up3"), uploader=(A, "a"), limits=(2, 3))
    with pytest.raises(QueueFullError):
        request(store, A, max_per_user=2, max_per_guild=3)
    request(store, B, max_per_user=2, max_per_guild=3)
    with pytest.raises(QueueFullError, match="already has 3 listeners' songs"):
        request(store, C, max_per_user=2, max_per_guild=3)
    store.finish_playing(store.start_playing(uploads[0].id).id)
    request(store, A, max_per_user=2, max_per_guild=3)


def test_an_empty_theme_is_refused_for_requests(store: Store) -> None:
    for theme in ("", "   "):
        with pytest.raises(InvalidValueError, match=r"theme .*1 to 300 characters, not empty"):
            request(store, A, theme=theme)


def test_an_adapter_name_ending_in_a_newline_is_refused(store: Store) -> None:
    with pytest.raises(InvalidValueError, match="adapter 'x': allowed is a name of 1-64"):
        store.update_guild_settings(GUILD, adapter="x\n")
    assert store.guild_settings(GUILD).adapter is None


def test_a_refused_value_is_echoed_without_mentions_links_or_host_paths(store: Store) -> None:
    hostile = "@everyone <@&1> https://evil.example/x /srv/radio/secret/file " + "y" * 300
    with pytest.raises(InvalidValueError) as info:
        request(store, A, theme=hostile)
    text = str(info.value)
    assert "at most 300 characters" in text
    for bad in ("@everyone", "<@&1>", "https://", "evil.example", "/srv/radio"):
        assert bad not in text, text


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_per_user": -1, "max_per_guild": 20}, "max_per_user -1: allowed is an integer"),
        ({"max_per_user": 3, "max_per_guild": 0}, "max_per_guild 0: allowed is an integer"),
    ],
)
def test_negative_or_zero_limits_are_refused(store: Store, limits: dict, message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        request(store, A, **limits)


def test_a_10000_character_theme_is_refused(store: Store) -> None:
    with pytest.raises(InvalidValueError) as info:
        request(store, A, theme="rain " * 2000)
    message = str(info.value)
    assert message.startswith("invalid theme 'rain rain")
    assert "(10000 characters)" in message and "at most 300 characters, got 9999" in message
    assert store.pending_jobs(GUILD) == []
    # 300 characters after stripping are fine
    assert len(request(store, A, theme="  " + "x" * 300 + "\n").theme) == 300
    with pytest.raises(InvalidValueError, match="without control characters"):
        request(store, A, theme="line one\nline two")


def test_request_length_is_checked_against_the_station_limit(store: Store) -> None:
    store.update_guild_settings(GUILD, max_length=90)
    with pytest.raises(InvalidValueError, match="length 120: allowed is an integer from 10 to 90"):
        store.enqueue_request(GUILD, requester_id=A, requester_name="a", theme="x", length=120, **LIMITS)
    job = store.enqueue_request(GUILD, requester_id=A, requester_name="a", theme="x", length=90, genre="jazz", **LIMITS)
    assert (job.length, job.genre) == (90, "jazz")


def test_a_job_is_retried_once_then_fails_with_its_reason(store: Store) -> None:
    request(store, A)
    request(store, B)
    job = store.next_job(GUILD)
    assert (job.status, job.attempts, job.requester_id) == ("writing", 1, A)
    job = store.mark_job_singing(job.id, spec("Rainy"))
    assert job.status == "singing" and job.spec.title == "Rainy"
    job = store.fail_job(job.id, "oom")
    assert (job.status, job.failure_reason) == ("queued", "oom")
    again = store.next_job(GUILD)  # back at its old place, ahead of B
    assert (again.id, again.attempts, again.spec.title) == (job.id, 2, "Rainy")
    job = store.fail_job(again.id, "oom")
    assert (job.status, job.failure_reason) == ("failed", "oom")
    assert job.finished_at is not None
    assert store.stats(GUILD).failures_by_reason == {"oom": 2}
    with pytest.raises(StateError, match=f"cannot fail job {job.id}: it is failed"):
        store.fail_job(job.id, "oom")


def test_illegal_job_transitions_are_refused(store: Store, tracks_dir: Path) -> None:
    job = request(store, A)
    with pytest.raises(StateError, match=r"cannot start singing job .*: it is queued"):
        store.mark_job_singing(job.id, spec())
    with pytest.raises(StateError, match="cannot finish job"):
        store.add_track(GUILD, make_track(tracks_dir, "t"), job_id=job.id)
    store.next_job(GUILD)
    with pytest.raises(StateError, match=r"cannot cancel job .*: it is writing"):
        store.cancel_job(job.id)
    with pytest.raises(InvalidValueError, match="reason"):
        store.fail_job(job.id, "   ")
    store.ensure_guild(OTHER_GUILD)
    with pytest.raises(StateError, match="belongs to guild"):
        store.add_track(OTHER_GUILD, make_track(tracks_dir, "t"), job_id=job.id)


def test_cancelling_queued_jobs(store: Store) -> None:
    a = request(store, A)
    request(store, B)
    store.enqueue_auto(GUILD)
    assert store.cancel_job(a.id).status == "cancelled"
    assert store.cancel_queued(GUILD, kind="auto") == 1
    assert [j.requester_id for j in store.pending_jobs(GUILD)] == [B]
    assert store.cancel_queued(GUILD) == 1
    assert store.pending_jobs(GUILD) == []


# --- tracks, playing, votes ---------------------------------------------------------------------


def test_an_uploaded_track_keeps_its_uploader_as_requester(store: Store, tracks_dir: Path) -> None:
    upload = store.add_track(GUILD, make_track(tracks_dir, "mine"), uploader=(42, "ann"))
    assert (upload.job_id, upload.requester_id, upload.requester_name) == (None, 42, "ann")
    job = request(store, A)
    store.next_job(GUILD)
    with pytest.raises(InvalidValueError, match="uploader"):
        store.add_track(GUILD, make_track(tracks_dir, "x"), job_id=job.id, uploader=(42, "ann"))
    with pytest.raises(InvalidValueError, match="uploader name"):
        store.add_track(GUILD, make_track(tracks_dir, "y"), uploader=(42, "  "))
    assert [t.id for t in store.buffered_tracks(GUILD)] == [upload.id]


def test_tracks_buffer_play_and_enter_history_and_library(store: Store, tracks_dir: Path) -> None:
    job = request(store, A)
    store.next_job(GUILD)
    first = store.add_track(GUILD, make_track(tracks_dir, "one", size=300), job_id=job.id)
    second = store.add_track(GUILD, make_track(tracks_dir, "two"), generation_seconds=5)
    assert store.get_job(job.id).status == "done"
    assert (first.requester_name, first.size_bytes, first.generation_seconds) == ("user11", 300, 10)
    assert first.track.settings == {"steps": 8} and first.spec.title == "one"
    assert [t.id for t in store.buffered_tracks(GUILD)] == [first.id, second.id]

    play = store.start_playing(store.next_track(GUILD).id)
    assert (play.track.id, play.source, play.outcome) == (first.id, "fresh", None)
    assert store.now_playing(GUILD).id == play.id
    with pytest.raises(StateError, match=f"already playing track {first.id}"):
        store.start_playing(second.id)
    store.finish_playing(play.id)
    assert store.now_playing(GUILD) is None
    assert store.library(GUILD) == [store.get_track(first.id)]

    fresh = store.start_playing(store.next_track(GUILD).id)
    store.finish_playing(fresh.id, skipped=True)
    replay = store.start_playing(first.id)
    assert replay.source == "replay"
    store.finish_playing(replay.id)
    history = store.history(GUILD, limit=2)
    assert [(p.track.title, p.source, p.outcome) for p in history] == [
        ("one", "replay", "finished"),
        ("two", "fresh", "skipped"),
    ]
    with pytest.raises(InvalidValueError, match="limit -1: allowed is an integer from 1 to 100"):
        store.history(GUILD, limit=-1)
    with pytest.raises(StateError, match="it ended"):
        store.finish_playing(replay.id)


def test_adding_a_track_whose_file_is_missing_is_refused(store: Store, tracks_dir: Path) -> None:
    track = make_track(tracks_dir, "gone")
    Path(track.path).unlink()
    with pytest.raises(InvalidValueError, match=r"track path .*an existing audio file"):
        store.add_track(GUILD, track)


def test_skip_votes_count_each_listener_once_per_play(store: Store, tracks_dir: Path) -> None:
    track = store.add_track(GUILD, make_track(tracks_dir, "t"))
    play = store.start_playing(track.id)
    assert store.record_vote(play.id, A).count == 1
    again = store.record_vote(play.id, A)
    assert (again.count, again.added) == (1, False)
    assert store.record_vote(play.id, B).count == 2
    assert store.vote_count(play.id) == 2
    store.finish_playing(play.id, skipped=True)
    with pytest.raises(StateError, match="cannot vote on play"):
        store.record_vote(play.id, C)
    replay = store.start_playing(track.id)
    assert store.vote_count(replay.id) == 0


# --- restart ------------------------------------------------------------------------------------


def test_restart_resumes_queue_and_buffer(db_path: Path, tracks_dir: Path) -> None:
    with Store(db_path) as store:
        store.ensure_guild(GUILD)
        for user in (A, A, B, C):
            request(store, user)
        store.enqueue_auto(GUILD)
        done = store.next_job(GUILD)  # A
        t1 = store.add_track(GUILD, make_track(tracks_dir, "t1"), job_id=done.id)
        in_flight = store.next_job(GUILD)  # B
        store.mark_job_singing(in_flight.id, spec("half sung"))
        t2 = store.add_track(GUILD, make_track(tracks_dir, "t2"))
        t3 = store.add_track(GUILD, make_track(tracks_dir, "t3"))
        play = store.start_playing(t1.id)
        queued_before = [j.id for j in store.pending_jobs(GUILD) if j.status == "queued"]
        # the process dies here: no finish_playing, no job result

    with Store(db_path) as store:
        report = store.recover()
        assert report.requeued_jobs == [in_flight.id]
        assert report.interrupted_tracks == [t1.id]
        assert report.failed_jobs == report.missing_tracks == []
        # the interrupted job is first again, with its spec; the rest keep their order
        pending = store.pending_jobs(GUILD)
        assert [j.id for j in pending] == [in_flight.id, *queued_before]
        assert [j.requester_id for j in pending] == [B, C, A, None]
        assert pending[0].spec.title == "half sung"
        # the track that was playing leads the buffer again
        assert [t.id for t in store.buffered_tracks(GUILD)] == [t1.id, t2.id, t3.id]
        assert store.history(GUILD)[0].outcome == "interrupted"
        assert store.history(GUILD)[0].id == play.id
        assert store.now_playing(GUILD) is None
        resumed = store.next_job(GUILD)
        assert (resumed.id, resumed.attempts) == (in_flight.id, 2)


def test_a_replay_interrupted_by_a_restart_stays_in_the_library(db_path: Path, tracks_dir: Path) -> None:
    with Store(db_path) as store:
        store.ensure_guild(GUILD)
        old = store.add_track(GUILD, make_track(tracks_dir, "old"))
        store.finish_playing(store.start_playing(old.id).id)
        waiting = store.add_track(GUILD, make_track(tracks_dir, "waiting"))
        store.start_playing(old.id)  # a replay, then the process dies
    with Store(db_path) as store:
        assert store.recover().interrupted_tracks == [old.id]
        assert [t.id for t in store.buffered_tracks(GUILD)] == [waiting.id]
        assert [t.id for t in store.library(GUILD)] == [old.id]
        assert [(p.source, p.outcome) for p in store.history(GUILD)] == [
            ("replay", "interrupted"),
            ("fresh", "finished"),
        ]


def test_a_job_that_keeps_killing_the_process_fails(db_path: Path) -> None:
    with Store(db_path) as store:
        store.ensure_guild(GUILD)
        job = request(store, A)
        reports = []
        for _ in range(3):  # taken, then the process dies while making it
            assert store.next_job(GUILD).id == job.id
            reports.append(store.recover(max_attempts=3))
        assert [r.requeued_jobs for r in reports] == [[job.id], [job.id], []]
        assert reports[-1].failed_jobs == [job.id]
        assert store.next_job(GUILD) is None
        assert store.get_job(job.id).failure_reason == "interrupted"
        assert store.stats(GUILD).failures_by_reason == {"interrupted": 1}


def test_a_vanished_track_file_is_skipped_with_a_log_line(
    db_path: Path, tracks_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(db_path) as store:
        store.ensure_guild(GUILD)
        gone = store.add_track(GUILD, make_track(tracks_dir, "gone"))
        kept = store.add_track(GUILD, make_track(tracks_dir, "kept"))
        later = store.add_track(GUILD, make_track(tracks_dir, "later"))
    gone.path.unlink()
    with Store(db_path) as store, caplog.at_level(logging.WARNING, logger="bot.store"):
        report = store.recover()
        assert report.missing_tracks == [gone.id]
        assert [t.id for t in store.buffered_tracks(GUILD)] == [kept.id, later.id]
        assert store.get_track(gone.id).status == "missing"
    [record] = [r for r in caplog.records if "vanished" in r.getMessage()]
    assert str(gone.path) in record.getMessage() and record.levelno == logging.WARNING

    # while running, too: the player asks for the next track and gets the next that exists
    with Store(db_path) as store, caplog.at_level(logging.WARNING, logger="bot.store"):
        caplog.clear()
        kept.path.unlink()
        assert store.next_track(GUILD).id == later.id
        assert any(str(kept.path) in r.getMessage() for r in caplog.records)
        store.finish_playing(store.start_playing(later.id).id)
        later.path.unlink()
        assert store.library(GUILD) == []
        assert store.next_track(GUILD) is None


# --- disk budget --------------------------------------------------------------------------------


def test_pruning_deletes_oldest_played_files_and_never_buffered_or_playing(store: Store, tracks_dir: Path) -> None:
    store.ensure_guild(OTHER_GUILD)
    played = []
    for i in range(3):
        record = store.add_track(GUILD, make_track(tracks_dir, f"old{i}", size=1000))
        store.finish_playing(store.start_playing(record.id).id)
        played.append(record)
    other = store.add_track(OTHER_GUILD, make_track(tracks_dir, "other", size=1000))
    store.finish_playing(store.start_playing(other.id).id)
    playing = store.add_track(GUILD, make_track(tracks_dir, "playing", size=1000))
    store.start_playing(playing.id)
    buffered = store.add_track(GUILD, make_track(tracks_dir, "buffered", size=1000))
    # 6000 bytes on disk; a 3500-byte budget needs the three oldest played gone
    report = store.prune_tracks(3500)
    assert report.pruned_tracks == [t.id for t in played]
    assert (report.freed_bytes, report.total_bytes, report.over_budget) == (3000, 3000, False)
    assert [t.path.exists() for t in played] == [False, False, False]
    assert other.path.exists() and playing.path.exists() and buffered.path.exists()
    assert store.get_track(played[0].id).status == "pruned"
    assert store.library(GUILD) == []
    assert store.stats(GUILD).songs_generated == 5  # pruned songs still count

    # within budget: nothing happens
    assert store.prune_tracks(3000).pruned_tracks == []
    # a budget below what is buffered and playing: only the played one goes, and it says so
    report = store.prune_tracks(0)
    assert report.pruned_tracks == [other.id]
    assert report.over_budget and report.total_bytes == 2000
    assert playing.path.exists() and buffered.path.exists()
    assert store.get_track(playing.id).status == "playing"
    assert store.get_track(buffered.id).status == "buffered"
    with pytest.raises(InvalidValueError, match="budget_bytes -1"):
        store.prune_tracks(-1)


# --- stats --------------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([4, 1, 3, 2], 50) == 2.5
    with pytest.raises(ValueError, match="from 0 to 100"):
        percentile([1], 101)


def test_stats_match_hand_computed_figures(store: Store, tracks_dir: Path) -> None:
    store.ensure_guild(OTHER_GUILD)
    # generation seconds 10..50, audio 60, 60, 30, 120, 100 s -> real-time factors 6, 3, 1, 3, 2
    figures = [(10, 60), (20, 60), (30, 30), (40, 120), (50, 100)]
    requesters = [A, B, A, None, A]
    for (seconds, duration), user in zip(figures, requesters, strict=True):
        job = request(store, user) if user else store.enqueue_auto(GUILD)
        assert store.next_job(GUILD).id == job.id
        store.add_track(
            GUILD,
            make_track(tracks_dir, f"s{seconds}", duration=duration),
            job_id=job.id,
            generation_seconds=seconds,
        )
    store.add_track(OTHER_GUILD, make_track(tracks_dir, "elsewhere", duration=60, dit=28))
    store.record_underrun(GUILD, seconds=2.5)
    store.record_underrun(GUILD)
    store.record_underrun(OTHER_GUILD)
    failing = request(store, C)
    store.next_job(GUILD)
    store.fail_job(failing.id, "worker_died")
    store.next_job(GUILD)
    store.fail_job(failing.id, "oom")
    store.start_playing(store.next_track(GUILD).id)

    stats = store.stats(GUILD)
    assert stats.songs_generated == 5 and stats.songs_played == 1
    assert stats.audio_seconds == 370
    # sorted 10 20 30 40 50: p50 at position 2 -> 30; p90 at 3.6 -> 46; p99 at 3.96 -> 49.6
    assert stats.generation_p50 == pytest.approx(30)
    assert stats.generation_p90 == pytest.approx(46)
    assert stats.generation_p99 == pytest.approx(49.6)
    assert stats.mean_real_time_factor == pytest.approx((6 + 3 + 1 + 3 + 2) / 5)
    assert stats.underruns == 2
    assert stats.failures_by_reason == {"oom": 1, "worker_died": 1}
    assert [(r.user_id, r.name, r.songs) for r in stats.top_requesters] == [
        (A, "user11", 3),
        (B, "user22", 1),
    ]

    overall = store.stats()
    assert overall.guild_id is None
    assert overall.songs_generated == 6 and overall.underruns == 3
    # the sixth song took 1 + 28 + 1 + 0 = 30 s for 60 s of audio: factor 2
    assert overall.generation_p50 == pytest.approx(30)
    assert overall.mean_real_time_factor == pytest.approx((15 + 2) / 6)


def test_stats_of_a_quiet_station_are_empty_not_errors(store: Store) -> None:
    stats = store.stats(GUILD)
    assert (stats.songs_generated, stats.generation_p50, stats.mean_real_time_factor) == (
        0,
        None,
        None,
    )
    assert stats.failures_by_reason == {} and stats.top_requesters == []


# --- threads ------------------------------------------------------------------------------------


def test_concurrent_use_from_threads_loses_nothing(db_path: Path) -> None:
    """Producers enqueue while consumers (on the same Store and on a second connection
    to the same file) take jobs: every job is taken exactly once."""
    first = Store(db_path)
    second = Store(db_path)
    first.ensure_guild(GUILD)
    producers_done = threading.Event()
    taken: list[int] = []
    errors: list[BaseException] = []
    taken_lock = threading.Lock()

    def produce(user: int) -> None:
        try:
            for i in range(25):
                request(first, user, theme=str(i), max_per_user=100, max_per_guild=1000)
        except BaseException as exc:
            errors.append(exc)

    def consume(store: Store) -> None:
        try:
            while True:
                job = store.next_job(GUILD)
                if job is None:
                    if producers_done.is_set():
                        return
                    time.sleep(0.001)
                    continue
                with taken_lock:
                    taken.append(job.id)
                store.add_track(GUILD, make_track(db_path.parent, f"j{job.id}"), job_id=job.id)
        except BaseException as exc:
            errors.append(exc)

    producers = [threading.Thread(target=produce, args=(u,)) for u in (A, B, C, D)]
    consumers = [threading.Thread(target=consume, args=(s,)) for s in (first, second, first)]
    for thread in producers + consumers:
        thread.start()
    for thread in producers:
        thread.join()
    producers_done.set()
    for thread in consumers:
        thread.join()
    first.close()
    second.close()
    assert errors == []
    assert len(taken) == len(set(taken)) == 100
    with Store(db_path) as store:
        assert store.pending_jobs(GUILD) == []
        assert store.stats(GUILD).songs_generated == 100
        assert Counter(r.songs for r in store.stats(GUILD).top_requesters) == Counter({25: 4})


def test_the_per_user_limit_holds_under_concurrent_requests(store: Store) -> None:
    outcomes: list[str] = []

    def ask() -> None:
        try:
            request(store, A, max_per_user=3, max_per_guild=20)
            outcomes.append("queued")
        except QueueFullError:
            outcomes.append("refused")

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["queued"] * 3 + ["refused"] * 9
    assert len(store.pending_jobs(GUILD)) == 3
