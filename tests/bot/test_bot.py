"""End to end: the real discord.py client against the local fake Discord, with the
real worker (tiny checkpoint), real SQLite and real ffmpeg; voice through
`tests.support.fake_voice`, which drains every audio source frame by frame.

One bot, one fake and one worker serve the whole module; each test takes a
server (guild) of its own, so stations do not share state. Waits are on the
fake's changes with a deadline, never on time.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest
import pytest_asyncio

from bot.station import Station
from tests.support.bot_world import Server, World, add_server, start_bot, world_settings
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_voice import PlayedSource, VoiceLog
from tests.support.radio_helpers import tone

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVERS = 15
LISTENING = {
    "radio_join",
    "radio_leave",
    "radio_nowplaying",
    "radio_queue",
    "radio_request",
    "radio_skip",
    "radio_history",
    "radio_stats",
    "radio_help",
    "radio_taste",
    "radio_save",
    "radio_favorites",
}
STATION = {
    "radio_auto",
    "radio_genre",
    "radio_theme",
    "radio_style",
    "radio_language",
    "radio_maxlength",
    "radio_preset",
    "radio_pause",
    "radio_resume",
    "radio_stop",
    "radio_settings",
    "radio_upload",
    "radio_adapter",
    "radio_adapters",
    "radio_adapter_share",
    "radio_train",
    "radio_train_status",
    "radio_train_stop",
    "radio_dataset",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    async with FakeDiscord() as fake:
        servers = [add_server(fake, f"server {i}") for i in range(SERVERS)]
        settings = world_settings(
            tmp_path_factory.mktemp("bot"),
            tiny_checkpoint_dir,
            fake.token,
            upload_max_mb=1,
            idle_disconnect_seconds=1,
        )
        voice = VoiceLog()
        async with start_bot(fake, settings, voice) as bot:
            yield World(fake, bot, voice, settings, servers)


@pytest_asyncio.fixture(loop_scope="module")
async def server(world: World) -> AsyncIterator[Server]:
    """A server no other test has used; the radio leaves it afterwards, so stations of
    finished tests stop asking the shared worker for songs."""
    assert len(world.servers) > 1, "raise SERVERS: the first server is kept for raw values"
    server = world.servers.pop()
    yield server
    await world.bot.radio.leave(server.id)


def station_of(world: World, server: Server) -> Station:
    station = world.bot.radio.known_station(server.id)
    assert station is not None
    return station


async def on_air(world: World, server: Server, *listeners) -> Station:
    """Listeners sit in the Lounge and the admin brings the radio there."""
    for user in listeners or (server.alice,):
        await server.guild.set_voice(user, server.lounge)
    await server.guild.set_voice(server.admin, server.lounge)
    _, message = await world.run(server, server.admin, "radio_join")
    assert "On air" in message.content, message.text
    return station_of(world, server)


def played(world: World, server: Server) -> list[PlayedSource]:
    return world.voice.plays_in(server.id)


async def test_login_syncs_every_command_with_its_permissions(world: World) -> None:
    assert world.fake.identifies == 1
    guild_id, commands = world.fake.command_syncs[-1]
    assert guild_id is None  # no DEV_GUILD_ID: global
    by_name = {command["name"]: command for command in commands}
    assert set(by_name) == LISTENING | STATION
    manage_server = discord.Permissions(manage_guild=True).value
    for name in STATION:
        assert int(by_name[name]["default_member_permissions"]) == manage_server, name
    for name in LISTENING:
        assert by_name[name]["default_member_permissions"] is None, name
    for name, command in by_name.items():
        assert command["description"], name
        if name != "radio_help":
            assert command["contexts"] == [0], name  # servers only
    request = {option["name"]: option for option in by_name["radio_request"]["options"]}
    assert request["theme"]["required"] and request["theme"]["max_length"] == 300
    assert request["genre"]["autocomplete"] and request["length"]["min_value"] == 10
    assert all(option["description"] for option in request.values())


async def test_help_lists_every_command_privately(world: World, server: Server) -> None:
    interaction, message = await world.run(server, server.alice, "radio_help")
    assert message.ephemeral
    for name in LISTENING | STATION:
        assert f"/{name}" in message.text
    assert interaction.answered_in is not None and interaction.answered_in < 3


async def history_of(station: Station) -> list:
    """Plays, oldest first, straight from the store."""
    plays = await asyncio.to_thread(station.store.history, station.guild_id, 100)
    return list(reversed(plays))


async def test_join_plays_the_station_frame_by_frame_and_posts_now_playing(world: World, server: Server) -> None:
    await on_air(world, server)
    plays = await world.fake.wait_for(lambda: [p for p in played(world, server) if p.ended and p.frames], timeout=120)
    first = plays[0]
    assert first.error is None and first.channel_id == server.lounge.id
    track = (await history_of(station_of(world, server)))[0].track
    # Every 20 ms Opus frame of the file went out and decoded: the whole track.
    assert first.seconds == pytest.approx(track.duration, abs=0.05)
    assert first.frames == pytest.approx(track.duration / 0.02, abs=3)

    def now_playing_messages() -> list:
        messages = world.fake.channel_messages.get(server.text.id, [])
        return [
            m
            for m in messages + world.fake.deleted_messages
            if m.channel_id == server.text.id and "Now playing" in m.text
        ]

    posted = await world.fake.wait_for(now_playing_messages)
    text = posted[0].text
    assert "Asked for by: the station (auto mode)" in text
    assert "Length: 0:10" in text and "Progress: " in text and "Made in: " in text
    assert posted[0].allowed_mentions == {"parse": []}


async def test_a_request_goes_from_slash_command_to_frames_with_no_gap(world: World, server: Server) -> None:
    station = await on_air(world, server, server.alice, server.bob)
    await world.fake.wait_for(lambda: played(world, server), timeout=120)
    # Hold the song playing now until the request is made, so the request plays
    # right after it: the join between the two is what is measured.
    await world.run(server, server.dj, "radio_pause")
    interaction, message = await world.run(server, server.bob, "radio_request", theme="rainy night in Tokyo", length=12)
    assert not message.ephemeral
    assert "rainy night in Tokyo" in message.content and "in the queue" in message.content
    assert interaction.answered_in is not None and interaction.answered_in < 3
    await world.fake.wait_for(lambda: any(t.requester_id == server.bob.id for t in station.buffered), timeout=120)
    await world.run(server, server.dj, "radio_resume")

    async def bobs_play():
        for index, play in enumerate(await history_of(station)):
            if play.track.requester_id == server.bob.id and play.ended_at is not None:
                return index, play
        return None

    index, play = await world.fake.wait_for(bobs_play, timeout=120)
    assert play.outcome == "finished" and play.track.spec.duration == 12
    assert play.track.requester_name == "bob"
    before, voice_play = played(world, server)[index - 1 : index + 1]  # voice follows history
    assert voice_play.ended and voice_play.error is None
    assert voice_play.seconds == pytest.approx(play.track.duration, abs=0.05)
    assert voice_play.frames == pytest.approx(play.track.duration / 0.02, abs=3)
    # No gap: the request's first frame follows the previous song's last one at
    # once (its ffmpeg was started while that song played).
    assert before.last_frame is not None and voice_play.first_frame is not None
    assert voice_play.first_frame - before.last_frame < 0.1


async def test_nowplaying_queue_history_and_stats_show_the_station(world: World, server: Server) -> None:
    station = await on_air(world, server)
    await world.fake.wait_for(lambda: [p for p in played(world, server) if p.ended], timeout=120)
    await world.fake.wait_for(lambda: station.now_playing is not None, timeout=120)
    _, message = await world.run(server, server.alice, "radio_request", theme="the moon")
    _, message = await world.run(server, server.alice, "radio_nowplaying")
    assert not message.ephemeral and "Progress: " in message.text and "0:10" in message.text
    _, message = await world.run(server, server.alice, "radio_queue")
    assert "Radio queue" in message.text and "the moon" in message.text
    assert "Ready to play" in message.text and "Waiting" in message.text
    _, message = await world.run(server, server.alice, "radio_history", count=5)
    titles = [play.track.title for play in await history_of(station)]
    assert "Recently played" in message.text and titles[0] in message.text
    _, message = await world.run(server, server.alice, "radio_stats")
    stats = await station.stats()
    assert f"Songs made: {stats.songs_generated}" in message.text
    assert "Time to make a song: median" in message.text and "x real time" in message.text


async def test_vote_skip_needs_enough_listeners_and_the_requester_skips_at_once(world: World, server: Server) -> None:
    station = await on_air(world, server, server.alice, server.bob)  # + the admin: 3 listeners
    await world.fake.wait_for(lambda: station.now_playing is not None, timeout=120)
    await world.run(server, server.dj, "radio_pause")  # keeps the song on while votes come
    play = station.now_playing
    assert play is not None

    _, message = await world.run(server, server.carol, "radio_skip")  # not in the channel
    assert message.ephemeral and "Only listeners can vote" in message.content
    _, message = await world.run(server, server.alice, "radio_skip")
    assert "Vote counted: 1/2 votes" in message.content
    _, message = await world.run(server, server.alice, "radio_skip")
    assert "voted already: 1/2" in message.content
    _, message = await world.run(server, server.bob, "radio_skip")
    assert "Skipped" in message.content and "2/2 votes" in message.content

    async def outcome(play_id: int):
        plays = await history_of(station)
        return next((p.outcome for p in plays if p.id == play_id and p.outcome), None)

    assert await world.fake.wait_for(lambda: outcome(play.id)) == "skipped"
    await world.run(server, server.dj, "radio_resume")

    await world.run(server, server.alice, "radio_request", theme="alice's own song")
    mine = await world.fake.wait_for(
        lambda: (p := station.now_playing) and p.track.requester_id == server.alice.id and p,
        timeout=120,
    )
    _, message = await world.run(server, server.alice, "radio_skip")
    assert "Skipped" in message.content and "its requester" in message.content
    assert await world.fake.wait_for(lambda: outcome(mine.id)) == "skipped"


async def test_station_commands_change_the_sound(world: World, server: Server) -> None:
    station = await on_air(world, server)
    dj = server.dj
    _, message = await world.run(server, dj, "radio_genre", genre="synthwave")
    assert "genre **synthwave**" in message.content and not message.ephemeral
    await world.run(server, dj, "radio_theme", theme="neon rain")
    await world.run(server, dj, "radio_style", style="dreamy, warm")
    await world.run(server, dj, "radio_language", language="ja")
    _, message = await world.run(server, dj, "radio_maxlength", seconds=45)
    assert "songs up to **45 s**" in message.content
    s = station.settings
    assert (s.genre, s.theme, s.mood, s.language, s.max_length) == ("synthwave", "neon rain", "dreamy, warm", "ja", 45)
    await world.run(server, dj, "radio_theme")  # no value clears it
    assert station.settings.theme == ""
    _, message = await world.run(server, dj, "radio_preset", name="lofi")
    assert "Preset **lofi**" in message.content and station.settings.genre == "lofi hip hop"
    _, message = await world.run(server, dj, "radio_auto", mode="off")
    assert "Auto mode is off" in message.content and not station.settings.auto_mode
    await world.run(server, dj, "radio_auto", mode="on")
    assert station.settings.auto_mode
    _, message = await world.run(server, server.admin, "radio_settings")
    assert "Station settings" in message.text and "Genre: lofi hip hop" in message.text
    assert f"DJ role: <@&{server.dj_role.id}>" in message.text  # DJ_ROLE=DJ, by name

    choices = await world.fake.autocomplete(server.guild, dj, "radio_genre", "genre", genre="wav")
    assert {"name": "synthwave", "value": "synthwave"} in choices
    choices = await world.fake.autocomplete(server.guild, dj, "radio_language", "language", language="japa")
    assert [c["value"] for c in choices] == ["ja"]
    choices = await world.fake.autocomplete(server.guild, dj, "radio_preset", "name", name="lo")
    assert "lofi" in [c["value"] for c in choices]


async def test_members_without_permission_get_a_clear_refusal(world: World, server: Server) -> None:
    station = await on_air(world, server)
    genre = station.settings.genre
    for command, options in [
        ("radio_genre", {"genre": "metal"}),
        ("radio_stop", {}),
        ("radio_settings", {"dj_role": server.admin_role}),
    ]:
        interaction, message = await world.run(server, server.alice, command, **options)
        assert message.ephemeral and len(interaction.messages) == 1
        assert "needs the Manage Server permission or the DJ role" in message.content
    assert station.settings.genre == genre and station.playing

    # A server's own DJ role replaces DJ_ROLE: the role named "DJ" no longer counts.
    mods = await server.guild.create_role("Mods")
    server.guild.members[server.carol.id].roles.append(mods.id)
    _, message = await world.run(server, server.admin, "radio_settings", dj_role=mods)
    assert "Settings saved" in message.content and station.settings.dj_role_id == mods.id
    _, message = await world.run(server, server.dj, "radio_genre", genre="metal")
    assert message.ephemeral and f"<@&{mods.id}>" in message.content
    _, message = await world.run(server, server.carol, "radio_genre", genre="metal")
    assert not message.ephemeral and station.settings.genre == "metal"


@pytest.mark.parametrize(
    ("user", "command", "options", "expected"),
    [
        ("dj", "radio_maxlength", {"seconds": 5000}, "integer from 30 to 60"),
        ("dj", "radio_maxlength", {"seconds": 29}, "integer from 30 to 60"),
        ("dj", "radio_maxlength", {"seconds": "long"}, "integer from 30 to 60"),
        ("alice", "radio_request", {"theme": "x", "length": 5000}, "from 10 to 60 seconds"),
        ("alice", "radio_request", {"theme": "x", "length": 3}, "from 10 to 60 seconds"),
        ("alice", "radio_request", {"theme": "y" * 400}, "at most 300 characters"),
        ("alice", "radio_history", {"count": 0}, "give 1 to 25"),
        ("dj", "radio_auto", {"mode": "maybe"}, "give on or off"),
        ("dj", "radio_language", {"language": "xx"}, "one of en, zh"),
        ("dj", "radio_preset", {"name": "polka-disco"}, "one of lofi, synthwave"),
        ("dj", "radio_genre", {"genre": "g" * 150}, "at most 100 characters"),
    ],
)
async def test_out_of_range_values_sent_raw_are_refused(
    world: World, user: str, command: str, options: dict, expected: str
) -> None:
    server = world.servers[0]  # one server for every case; the `server` fixture leaves it
    interaction, message = await world.run(server, getattr(server, user), command, **options)
    assert message.ephemeral, message.text
    assert expected in message.content and "allowed" in message.content
    assert len(interaction.messages) == 1  # the "thinking" message was replaced, not kept


def voice_client(world: World, server: Server):
    guild = world.bot.get_guild(server.id)
    return guild.voice_client if guild is not None else None


async def test_pause_resume_stop_join_and_leave(world: World, server: Server) -> None:
    station = await on_air(world, server)
    await world.fake.wait_for(lambda: voice_client(world, server).is_playing(), timeout=120)
    _, message = await world.run(server, server.dj, "radio_pause")
    assert "Paused" in message.content and voice_client(world, server).is_paused()
    current = played(world, server)[-1]
    await world.fake.wait_for(lambda: current.silence_frames >= 5)  # what a paused player sends
    frames = current.frames
    _, message = await world.run(server, server.dj, "radio_pause")
    assert message.ephemeral and "paused already" in message.content
    assert current.frames == frames  # nothing played while paused
    _, message = await world.run(server, server.dj, "radio_resume")
    assert "Playing on" in message.content
    await world.fake.wait_for(lambda: current.frames > frames or current.ended)

    for theme in ("one", "two", "three"):
        await world.run(server, server.alice, "radio_request", theme=theme)
    _, message = await world.run(server, server.dj, "radio_stop")
    assert "Stopped" in message.content and "waiting request(s) cancelled" in message.content
    assert not station.playing and not voice_client(world, server).is_playing()
    pending = await asyncio.to_thread(station.store.pending_jobs, server.id)
    assert not [job for job in pending if job.kind == "request" and job.status == "queued"]

    _, message = await world.run(server, server.admin, "radio_join")
    assert "On air" in message.content and station.playing
    _, message = await world.run(server, server.carol, "radio_leave")  # not listening
    assert message.ephemeral and "Only listeners" in message.content
    _, message = await world.run(server, server.alice, "radio_leave")
    assert "Left" in message.content and not station.playing
    await world.fake.wait_for(lambda: world.fake.bot.id not in server.guild.voice_states)
    assert station.settings.voice_channel_id is None
    _, message = await world.run(server, server.alice, "radio_leave")
    assert message.ephemeral and "not in a voice channel" in message.content


async def test_join_needs_a_voice_channel(world: World, server: Server) -> None:
    _, message = await world.run(server, server.carol, "radio_join")
    assert message.ephemeral and "Join a voice channel first" in message.content
    _, message = await world.run(server, server.carol, "radio_nowplaying")
    assert message.ephemeral and "/radio_join" in message.content


def sine(path: Path, seconds: float) -> bytes:
    return tone(path, seconds, "-ac", "2").read_bytes()


async def test_upload_puts_a_listeners_file_in_the_queue(world: World, server: Server, tmp_path: Path) -> None:
    station = await on_air(world, server)
    song = await asyncio.to_thread(sine, tmp_path / "song.mp3", 12)
    attachment = world.fake.add_attachment("my_summer_song.mp3", song, "audio/mpeg")
    _, message = await world.run(server, server.dj, "radio_upload", file=attachment)
    assert "**my summer song** (12 s) is in the queue" in message.content

    async def upload_play():
        for index, play in enumerate(await history_of(station)):
            if play.track.job_id is None and play.ended_at is not None:
                return index, play
        return None

    index, play = await world.fake.wait_for(upload_play, timeout=120)
    assert play.track.requester_id == server.dj.id and play.outcome == "finished"
    voice_play = played(world, server)[index]
    assert voice_play.seconds == pytest.approx(12, abs=0.1)

    refusals = [
        (world.fake.add_attachment("notes.txt", b"hello", "text/plain"), "not an audio file"),
        (world.fake.add_attachment("big.mp3", song, size=2 * 2**20), "at most 1 MB"),
        (
            world.fake.add_attachment(
                "short.wav", await asyncio.to_thread(sine, tmp_path / "short.wav", 3), "audio/wav"
            ),
            "allowed is 10 to 60 s",
        ),
        (world.fake.add_attachment("noise.ogg", b"OggS" + b"\0" * 500), "holds no Ogg audio"),
    ]
    for attachment, expected in refusals:
        _, message = await world.run(server, server.dj, "radio_upload", file=attachment)
        assert message.ephemeral and expected in message.content, message.content
    _, message = await world.run(server, server.alice, "radio_upload", file=attachment)
    assert message.ephemeral and "Manage Server" in message.content


async def test_the_radio_reconnects_after_a_voice_disconnect(world: World, server: Server) -> None:
    station = await on_air(world, server)
    await world.fake.wait_for(lambda: played(world, server), timeout=120)
    kicked = len(played(world, server))
    await server.guild.set_voice(world.fake.bot, None)  # an admin disconnects the bot
    await world.fake.wait_for(lambda: [d for d in world.voice.disconnects if d[0] == server.lounge.id and d[2]])
    back = await world.fake.wait_for(lambda: [p for p in played(world, server)[kicked:] if p.frames], timeout=120)
    assert back[0].channel_id == server.lounge.id and station.playing
    assert server.guild.voice_states[world.fake.bot.id] == server.lounge.id


async def test_the_radio_leaves_when_nobody_listens(world: World, server: Server) -> None:
    station = await on_air(world, server)  # alice and the admin listen
    await server.guild.set_voice(server.alice, None)
    await server.guild.set_voice(server.admin, None)  # IDLE_DISCONNECT_SECONDS=1 later:
    await world.fake.wait_for(lambda: world.fake.bot.id not in server.guild.voice_states)
    assert not station.playing
    await world.fake.wait_for(
        lambda: any(
            "Nobody was listening for 1 s" in m.content for m in world.fake.channel_messages.get(server.text.id, [])
        )
    )


async def test_the_bot_survives_a_worker_kill_mid_song(world: World, server: Server) -> None:
    station = await on_air(world, server)
    await world.fake.wait_for(lambda: station.now_playing is not None, timeout=120)
    client = world.bot.stations.client
    old_pid = client.pid
    await world.run(server, server.alice, "radio_request", theme="survivor", length=30)
    await world.fake.wait_for(lambda: any(h.started for h in client.in_flight), timeout=120)
    frames = sum(p.frames for p in played(world, server))
    os.kill(old_pid, signal.SIGKILL)

    await world.fake.wait_for(lambda: client.state == "ready" and client.pid not in (None, old_pid), timeout=120)
    _, message = await world.run(server, server.alice, "radio_nowplaying")
    assert not message.ephemeral  # commands still work while the worker restarts

    async def alices_play():
        plays = await history_of(station)
        return next((p for p in plays if p.track.requester_id == server.alice.id), None)

    play = await world.fake.wait_for(alices_play, timeout=120)
    assert play.track.spec.duration == 30
    assert sum(p.frames for p in played(world, server)) > frames  # it kept playing
    stats = await station.stats()
    assert any(reason.startswith("worker_died") for reason in stats.failures_by_reason)


async def test_every_interaction_was_answered_in_time_without_mentions(world: World) -> None:
    assert len(world.fake.interactions) > 50
    for interaction in world.fake.interactions.values():
        assert interaction.late_callbacks == 0, interaction.name
        assert interaction.answered_in is not None and interaction.answered_in < 3
        for message in interaction.messages:
            assert message.allowed_mentions == {"parse": []}, (interaction.name, message.text)
    for messages in world.fake.channel_messages.values():
        for message in messages:
            assert message.allowed_mentions == {"parse": []}, message.text


async def test_the_lyrics_rating_is_set_by_manage_server_and_cleans_requests(world: World, server: Server) -> None:
    station = await on_air(world, server)
    _, message = await world.run(server, server.admin, "radio_settings")
    assert "Lyrics: clean (LYRICS_RATING)" in message.text
    # A DJ without Manage Server may change other settings, not the rating.
    _, message = await world.run(server, server.dj, "radio_settings", lyrics="explicit")
    assert message.ephemeral and "Only members with Manage Server" in message.content
    assert station.lyrics_rating == "clean"

    _, message = await world.run(server, server.bob, "radio_request", theme="a cocaine party")
    assert "rated clean" in message.content and "cocaine" not in message.content
    assert "“a party”" in message.content
    _, message = await world.run(server, server.bob, "radio_request", theme="cocaine")
    assert message.ephemeral and "rated clean" in message.content
    queued = await asyncio.to_thread(station.store.pending_jobs, station.guild_id)
    assert [job.theme for job in queued].count("a party") == 1

    _, message = await world.run(server, server.admin, "radio_settings", lyrics="explicit")
    assert "Settings saved" in message.content and "Lyrics: explicit" in message.text
    assert station.settings.lyrics_rating == "explicit"
    _, message = await world.run(server, server.bob, "radio_request", theme="a cocaine party")
    assert "rated clean" not in message.content and "a cocaine party" in message.content
