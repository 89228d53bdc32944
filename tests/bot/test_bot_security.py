"""The radio read as an attacker and a careless admin would, through the fake Discord.

One bot in several servers: `home` and `other` are in TRAINING_GUILDS, `public`
belongs to a stranger who invited the bot (and so has Manage Server there). The
application is team-owned: the fake serves the team in `GET /oauth2/applications/@me`.
Each test takes servers of its own. See docs/security.md for the rules checked here.
"""

from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from discord import app_commands

from bot.permissions import LEVELS, access_of, anyone, bot_owner_only, dj_only, trainer_only
from bot.training.progress import TrainingProgress
from tests.support.bot_world import Server, World, add_server, start_bot, world_settings
from tests.support.fake_discord import FakeDiscord, FakeMessage, FakeUser, snowflake
from tests.support.fake_voice import VoiceLog
from tests.support.radio_helpers import tone
from tests.support.seams import measure_seams
from tests.support.train_helpers import CHILD_ENV, fast_config, make_audio_dir

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADAPTER = "tonal"
SERVERS = ("home", "other", "settings", "limits", "names-p", "names-q", "uploads", "seams", "levels")
#: An absolute path of this machine in a message.
HOST_PATH = re.compile(r"(?<![\w/])/(?:[\w.-]+/)+")


class Security(World):
    stranger: FakeUser  # owns `public`
    dev: FakeUser  # the team's developer: an owner
    reader: FakeUser  # the team's read-only member: not an owner
    extra: FakeUser  # in OWNER_IDS
    public: Server
    root: Path

    def server(self, name: str) -> Server:
        return next(s for s in self.servers if s.guild.name == name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    from training.presets import save_preset

    root = tmp_path_factory.mktemp("bot-security")
    async with FakeDiscord() as fake:
        people = {name: FakeUser(snowflake(), name) for name in ("stranger", "dev", "reader", "x")}
        fake.team = [(fake.owner, "admin"), (people["dev"], "developer"), (people["reader"], "read_only")]
        servers = [add_server(fake, name) for name in SERVERS]
        public = add_server(fake, "public", owner=people["stranger"])
        for user in (fake.owner, people["dev"], people["reader"], people["x"]):
            public.guild.add_member(user)
        home, other = servers[0], servers[1]
        settings = world_settings(
            root,
            tiny_checkpoint_dir,
            fake.token,
            owner_ids=(people["x"].id,),
            training_guilds=(home.id, other.id),
            upload_max_mb=1,
            max_queue_per_user=2,
        )
        make_audio_dir(settings.datasets_dir / "tones", ["synth.wav", "pad.flac"], broken=False)
        tiny = fast_config(tiny_checkpoint_dir, root, epochs=2)
        save_preset("tiny", tiny, settings.data_dir / "training-presets", "tests: tiny model")
        training = {"overrides": {"cache_dir": root / "cache"}, "env": CHILD_ENV, "poll_seconds": 0.2}
        voice = VoiceLog()
        async with start_bot(fake, settings, voice, training) as bot:
            world = Security(fake, bot, voice, settings, [*servers, public])
            world.stranger, world.dev = people["stranger"], people["dev"]
            world.reader, world.extra = people["reader"], people["x"]
            world.public, world.root = public, root
            yield world


async def refused(world: World, server: Server, user: FakeUser, command: str, **options) -> str:
    _, message = await world.run(server, user, command, **options)
    assert message.ephemeral and message.content.startswith("⚠️"), message.text
    assert not HOST_PATH.search(message.content), message.content
    return message.content


async def choices(world: World, server: Server, user: FakeUser, command: str, option: str, **options) -> list[str]:
    found = await world.fake.autocomplete(server.guild, user, command, option, **options)
    return [choice["value"] for choice in found]


# --- who may train: finding 1, autocomplete: finding 11 ------------------------------------


async def test_training_needs_the_bot_owner_or_an_allowed_servers_admin(world: Security) -> None:
    public = world.public
    # Manage Server in the stranger's own server is not enough (the GPU is everyone's).
    for user in (public.admin, world.stranger, world.reader):
        text = await refused(world, public, user, "radio_train", dataset="tones", name="mine")
        assert "for the bot's owner" in text and "TRAINING_GUILDS" in text
    assert world.fake.application_reads >= 1  # the owners were read from Discord
    # Autocomplete tells nothing to members who may not run the command.
    assert await choices(world, public, public.admin, "radio_train", "dataset", dataset="", name="x") == []
    assert await choices(world, public, public.alice, "radio_adapter", "name", name="") == []
    assert await choices(world, public, public.alice, "radio_genre", "genre", genre="") == []
    assert await choices(world, public, public.alice, "radio_preset", "name", name="") == []
    assert await choices(
        world, public, public.alice, "radio_request", "genre", theme="x", genre="jazz"
    )  # listening commands still suggest
    # The team's admins and developers, and OWNER_IDS, are owners; so is an allowed admin.
    for server, user in (
        (public, world.dev),
        (public, world.extra),
        (public, world.fake.owner),
        (world.server("home"), world.server("home").admin),
    ):
        found = await choices(world, server, user, "radio_train", "dataset", dataset="", name="x")
        assert found == ["tones"], user.name


async def test_a_run_belongs_to_its_server_and_its_adapter_too(world: Security) -> None:
    home, other, public = world.server("home"), world.server("other"), world.public
    _, message = await world.run(
        home, home.admin, "radio_train", dataset="tones", name=ADAPTER, preset="tiny", epochs=500
    )
    assert "Training started" in message.content, message.text
    progress = world.bot.training.progress
    assert progress is not None and progress.run_id is not None
    home_run = progress.run_id
    # Another server's run waits in line; it learns only that a run is ahead of it: no
    # name in its answer or its status, and it cannot stop that run.
    _, queued = await world.run(other, other.admin, "radio_train", dataset="tones", name="b", preset="tiny")
    assert "waits in line: 1 run is ahead of it" in queued.content and ADAPTER not in queued.text
    _, status = await world.run(other, other.admin, "radio_train_status")
    assert status.ephemeral and ADAPTER not in status.content, status.content
    assert "adapter **b**" in status.content and "1 run(s) of other servers" in status.content
    text = await refused(world, other, other.admin, "radio_train_stop", run=f"#{home_run}")
    assert f"Run #{home_run} is not one of this server's running or waiting runs" in text
    _, message = await world.run(other, other.admin, "radio_train_stop")  # its own, in line
    assert "adapter **b**" in message.content and "is out of line" in message.content
    await refused(world, public, public.admin, "radio_train_status")
    busy = world.bot.stations.busy_reason or ""  # what every station's queue shows
    assert "an adapter is training" in busy and ADAPTER not in busy
    # Its own server, and the owner anywhere, see it.
    _, status = await world.run(public, world.fake.owner, "radio_train_status")
    assert f"#{home_run} adapter **{ADAPTER}** on **tones**: running" in status.content

    async def training() -> bool:
        progress = world.bot.training.progress
        return progress is not None and progress.state == "training" and progress.step > 0

    await world.fake.wait_for(training, timeout=240)
    _, message = await world.run(home, home.admin, "radio_train_stop")
    assert f"Stopping #{home_run} adapter **{ADAPTER}**" in message.content, message.content
    progress = await world.bot.training.wait()
    assert isinstance(progress, TrainingProgress) and progress.state == "stopped"
    board = next(m for m in world.fake.channel_messages[home.text.id] if "⏹️" in m.content)
    assert "training stopped" in board.content and not HOST_PATH.search(board.content)
    assert (world.settings.adapters_dir / f"g{home.id}-{ADAPTER}").is_dir()

    # The adapter is home's: other servers neither see nor use it.
    text = await refused(world, public, public.dj, "radio_adapter", name=ADAPTER)
    assert f"invalid adapter '{ADAPTER}'" in text
    _, listing = await world.run(public, public.dj, "radio_adapters")
    assert ADAPTER not in listing.content
    assert await choices(world, public, public.dj, "radio_adapter", "name", name="") == ["off"]
    _, message = await world.run(home, home.dj, "radio_adapter", name=ADAPTER)
    assert f"adapter **{ADAPTER}**" in message.content
    # An adapter a station sings with is never overwritten by a new run.
    text = await refused(world, home, home.admin, "radio_train", dataset="tones", name=ADAPTER)
    assert "a name no station sings with now" in text
    # Only the owner shares it with every server.
    text = await refused(world, home, home.admin, "radio_adapter_share", name=ADAPTER)
    assert "for the bot's owner only" in text
    _, message = await world.run(home, world.fake.owner, "radio_adapter_share", name=ADAPTER)
    assert "is shared" in message.content
    _, message = await world.run(public, public.dj, "radio_adapter", name=ADAPTER)
    assert f"adapter **{ADAPTER}**" in message.content
    text = await refused(world, home, world.fake.owner, "radio_adapter_share", name=ADAPTER)
    assert "never replaced" in text


# --- station settings: finding 4 and a voice channel as the text channel --------------------


async def test_who_is_dj_and_where_the_radio_posts_need_manage_server(world: Security) -> None:
    server = world.server("settings")
    everyone = server.guild.everyone
    for options in ({"dj_role": server.admin_role}, {"channel": server.text}):
        text = await refused(world, server, server.dj, "radio_settings", **options)
        assert "needs the Manage Server permission" in text
    _, message = await world.run(server, server.dj, "radio_settings")  # looking is fine
    assert "Station settings" in message.text
    station = world.bot.radio.known_station(server.id)
    assert station is not None and station.settings.dj_role_id is None
    assert station.settings.text_channel_id is None
    text = await refused(world, server, server.admin, "radio_settings", dj_role=everyone)
    assert "@everyone cannot be the DJ role" in text
    text = await refused(world, server, server.admin, "radio_settings", channel=server.lounge)
    assert "#Lounge (a voice channel) cannot be used here: give a text channel" in text
    assert "AppCommandChannel" not in text and "ChannelType" not in text


# --- who may run what: every command declares its level, which Discord shows and the bot checks --


async def test_every_command_declares_who_may_run_it(world: Security) -> None:
    levels: dict[str, str] = {}
    for command in world.bot.tree.walk_commands():
        if isinstance(command, app_commands.Group):
            continue
        name = command.qualified_name
        level = access_of(command)
        assert level in LEVELS, f"/{name} declares no level: put @anyone, @dj_only, ... above it"
        root = command.root_parent or command
        assert root.default_permissions == level.default_permissions, name  # what Discord shows
        assert (level.check in command.checks) == (level is not anyone), name  # what the bot checks
        assert root.guild_only or level is anyone, name
        levels[name] = level.name
    assert {levels[n] for n in ("radio_request", "radio_skip", "radio_help", "radio_save")} == {"anyone"}
    assert {levels[n] for n in ("radio_genre", "radio_stop", "radio_adapter", "radio_upload")} == {"dj_only"}
    assert {levels[n] for n in ("radio_train", "radio_train_stop", "radio_dataset add")} == {"trainer_only"}
    assert levels["radio_adapter_share"] == "bot_owner_only"


async def test_each_level_refuses_who_may_not_and_lets_through_who_may(world: Security) -> None:
    server, owner = world.server("levels"), world.fake.owner  # not a TRAINING_GUILDS server
    # anyone: a member with no role at all.
    _, help_message = await world.run(server, server.alice, "radio_help")
    assert help_message.ephemeral and not help_message.content.startswith("⚠️")
    # dj_only: Manage Server or the DJ role.
    text = await refused(world, server, server.alice, "radio_genre", genre="jazz")
    dj_role = f"<@&{server.dj_role.id}>"
    assert (
        f"/radio_genre is a station command: it needs the Manage Server permission or the DJ role ({dj_role})" in text
    )
    for user in (server.dj, server.admin):
        _, message = await world.run(server, user, "radio_genre", genre="jazz")
        assert "plays genre **jazz**" in message.content, message.text
    # trainer_only: neither the DJ role nor Manage Server outside TRAINING_GUILDS; a group's command too.
    for user in (server.alice, server.dj, server.admin):
        text = await refused(world, server, user, "radio_dataset list")
        assert text.startswith("⚠️ /radio_dataset list is for the bot's owner: a training run takes the GPU"), text
        assert "TRAINING_GUILDS" in text
    _, message = await world.run(server, owner, "radio_dataset list")
    assert message.ephemeral and "**tones** (shared)" in message.content
    # bot_owner_only: not even an admin of a TRAINING_GUILDS server.
    home = world.server("home")
    for where, user in ((server, server.admin), (server, server.dj), (home, home.admin)):
        assert await refused(world, where, user, "radio_adapter_share", name="x") == (
            "⚠️ /radio_adapter_share is for the bot's owner only."
        )
    text = await refused(world, server, owner, "radio_adapter_share", name="x")  # past the check
    assert "invalid adapter 'x'" in text and "for the bot's owner" not in text

    # /radio_help lists each command under who may run it.
    heading, under = "", {}
    for line in help_message.embeds[0]["description"].splitlines():
        if line.startswith("**"):
            heading = line.strip("*")
        elif line.startswith("`/"):
            under[line[2 : line.index("`", 2)]] = heading
    assert under["radio_request"] == anyone.heading
    assert under["radio_genre"] == under["radio_settings"] == dj_only.heading
    assert under["radio_train"] == under["radio_dataset add"] == trainer_only.heading
    assert under["radio_adapter_share"] == bot_owner_only.heading
    assert len(under) == len([c for c in world.bot.tree.walk_commands() if not isinstance(c, app_commands.Group)])


# --- limits: finding 3, the theme's echo and emptiness --------------------------------------


async def test_finished_songs_waiting_to_play_count_toward_a_listeners_limit(
    world: Security,
) -> None:
    server = world.server("limits")  # never on air: the songs wait in the buffer
    for theme in ("one", "two"):
        _, message = await world.run(server, server.alice, "radio_request", theme=theme)
        assert "in the queue" in message.content
    station = world.bot.radio.known_station(server.id)
    assert station is not None
    await world.fake.wait_for(lambda: len(station.buffered) == 2, timeout=120)
    text = await refused(world, server, server.alice, "radio_request", theme="three")
    assert "already has 2 song(s) waiting, being made or ready to play" in text
    text = await refused(world, server, server.bob, "radio_request", theme="")
    assert "invalid theme" in text and "not empty" in text
    text = await refused(world, server, server.bob, "radio_request", theme="   ")
    assert "not empty" in text
    hostile = "@everyone <@&1> https://evil.example/x " + "y" * 400
    text = await refused(world, server, server.bob, "radio_request", theme=hostile)
    assert "at most 300 characters" in text
    for bad in ("@everyone", "<@&1>", "https://", "evil.example"):
        assert bad not in text, text


# --- names per server: finding 12 ---------------------------------------------------------------


async def test_top_requesters_show_the_name_a_member_has_in_this_server(world: Security) -> None:
    here, there = world.server("names-p"), world.server("names-q")
    zed = world.fake.add_user(here.guild, "zed")
    there.guild.add_member(zed).nick = "Secret Q name"
    for server in (here, there):  # the latest song is the one from the other server
        await world.run(server, zed, "radio_request", theme=f"a song in {server.guild.name}")
        station = world.bot.radio.known_station(server.id)
        assert station is not None
        await world.fake.wait_for(lambda s=station: s.buffered, timeout=120)
    _, stats = await world.run(here, here.alice, "radio_stats")
    assert "zed" in stats.text and "Secret Q name" not in stats.text
    _, stats = await world.run(there, there.alice, "radio_stats")
    assert "Secret Q name" in stats.text


# --- uploads: findings 2, 8, 9 ----------------------------------------------------------------


def _sine(path: Path, seconds: float, *options: str) -> bytes:
    return tone(path, seconds, *options, frequency=330).read_bytes()


def hostile_corpus(folder: Path, tracks_dir: Path) -> list[tuple[str, bytes, str | None]]:
    """(file name, bytes, what the refusal says; None: accepted)."""
    private = folder / "private" / "diary.flac"  # a file of the host, outside the data folders
    private.parent.mkdir(parents=True)
    _sine(private, 15)
    other_servers_track = tracks_dir / "someone-elses-song.ogg"
    other_servers_track.parent.mkdir(parents=True, exist_ok=True)  # also when this test runs alone
    _sine(other_servers_track, 15, "-c:a", "libopus")
    playlist = (
        f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:15\n#EXTINF:15.0,\n{private}\n#EXT-X-ENDLIST\n"
    ).encode()
    concat = f"ffconcat version 1.0\nfile '{other_servers_track}'\n".encode()
    lying = bytearray(_sine(folder / "long.webm", 600, "-c:a", "libopus", "-b:a", "6k", "-ac", "1"))
    duration = lying.find(b"\x44\x89\x88")  # Segment Info > Duration, 8-byte float, in ms
    lying[duration + 3 : duration + 11] = struct.pack(">d", 30_000.0)  # "30 s"
    huge = bytearray(_sine(folder / "short.webm", 12, "-c:a", "libopus", "-b:a", "6k"))
    duration = huge.find(b"\x44\x89\x88")
    huge[duration + 3 : duration + 11] = struct.pack(">d", 3.6e9)  # "1000 hours"
    noise = np.random.default_rng(13).integers(1, 255, 50_000, dtype=np.uint8).tobytes()
    return [
        ("hls.mp3", playlist, "a playlist (HLS/M3U), not audio"),
        ("concat.ogg", concat, "an ffmpeg concat script"),
        ("lying.webm", bytes(lying), "longer than 60 s"),
        ("huge.webm", bytes(huge), "the file says it is 3600000 s long"),
        ("empty.mp3", b"", "the file is empty"),
        ("random.mp3", noise, "not MP3 audio, as its name says"),
        ("good.mp3", _sine(folder / "good.mp3", 12), None),
    ]


async def test_a_hostile_upload_corpus_is_refused_cleanly(world: Security, tmp_path: Path) -> None:
    server = world.server("uploads")
    tracks = world.settings.tracks_dir
    corpus = await asyncio.to_thread(hostile_corpus, tmp_path, tracks)
    for name, data, expected in corpus:
        # Discord's reported size is checked first; an empty file claims some bytes here.
        attachment = world.fake.add_attachment(name, data, size=len(data) or 1000)
        before = set(tracks.iterdir())
        _, message = await world.run(server, server.dj, "radio_upload", file=attachment)
        after = set(tracks.iterdir())
        if expected is None:
            assert "is in the queue" in message.content, message.text
            assert len(after - before) == 1
            continue
        assert message.ephemeral and expected in message.content, (name, message.content)
        assert not HOST_PATH.search(message.content), message.content
        assert str(tmp_path) not in message.content and "diary" not in message.content
        assert after == before, (name, after - before)  # nothing left behind


async def test_an_upload_that_takes_too_long_is_refused_and_leaves_nothing(
    world: Security, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.audio_import

    server = world.server("uploads")
    song = await asyncio.to_thread(_sine, tmp_path / "slow.mp3", 12)
    monkeypatch.setattr(engine.audio_import, "CONVERT_TIMEOUT", 0.001)  # a stuck ffmpeg
    before = set(world.settings.tracks_dir.iterdir())
    attachment = world.fake.add_attachment("slow.mp3", song)
    text = await refused(world, server, server.admin, "radio_upload", file=attachment)
    assert "converting the file took longer than" in text
    assert set(world.settings.tracks_dir.iterdir()) == before


# --- the seam between songs -------------------------------------------------------------------


async def test_the_silence_between_songs_is_under_50_ms(world: Security, tmp_path: Path) -> None:
    figures = await measure_seams(world, world.server("seams"), tmp_path, count=4, seconds=1.0)
    print(figures.summary())
    assert figures.header_packets == 0  # OpusHead/OpusTags never go out as frames
    assert len(figures.seams_ms) == 3
    assert sorted(figures.seams_ms)[1] <= 50, figures.summary()  # the median of three


async def test_every_answer_was_private_when_refused_and_pinged_nobody(world: Security) -> None:
    messages: list[FakeMessage] = []
    for interaction in world.fake.interactions.values():
        messages += interaction.messages
    assert messages
    for message in messages:
        assert message.allowed_mentions == {"parse": []}, message.text
        assert not HOST_PATH.search(message.text), message.text


# --- shutdown during training: finding 5 (last: it closes the bot) --------------------------------


async def test_shutdown_during_training_stops_it_first_and_never_restarts_the_worker(
    world: Security, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = world.server("home")
    _, message = await world.run(
        home, home.admin, "radio_train", dataset="tones", name="bye", preset="tiny", epochs=500
    )
    assert "Training started" in message.content, message.text

    async def training() -> bool:
        progress = world.bot.training.progress
        return progress is not None and progress.state == "training" and progress.step > 0

    await world.fake.wait_for(training, timeout=240)
    client, store = world.bot.stations.client, world.bot.stations.store
    events: list[str] = []
    client.on_event = lambda event: events.append(event.kind)

    async def broken_close() -> None:
        raise RuntimeError("voice would not close")

    monkeypatch.setattr(world.bot.radio, "close", broken_close)
    await world.bot.close()
    assert "ready" not in events and "resumed" not in events  # the worker never came back
    assert client.state == "closed" and client.pid is None
    # One failing step did not keep the others from running: the database is closed.
    assert store._conn is None
    # The trainer was stopped first and what it learnt was kept.
    assert (world.settings.adapters_dir / f"g{home.id}-bye").is_dir()
    assert not (world.settings.data_dir / "training-run.json").exists()
