"""Taste and keeping songs, end to end: the real bot on the fake Discord, with the real
worker (tiny checkpoint, template songwriter), real SQLite and real ffmpeg.

👍/👎 are pressed as a Discord client presses buttons (MESSAGE_COMPONENT
interactions), `/radio_save` is checked in the DMs the fake received. Each
test has servers of its own; the radio leaves them afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from bot.taste.features import caption_tags
from engine.audio import probe
from tests.support.bot_world import Server, World, add_server, start_bot, world_settings
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_voice import VoiceLog
from tests.support.taste_helpers import counts, on_air, playing, press

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVERS = 5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    async with FakeDiscord() as fake:
        servers = [add_server(fake, f"server {i}") for i in range(SERVERS)]
        settings = world_settings(tmp_path_factory.mktemp("taste"), tiny_checkpoint_dir, fake.token)
        voice = VoiceLog()
        async with start_bot(fake, settings, voice) as bot:
            yield World(fake, bot, voice, settings, servers)


@pytest_asyncio.fixture(loop_scope="module")
async def server(world: World):
    server = world.servers.pop()
    yield server
    await world.bot.radio.leave(server.id)


async def test_buttons_count_one_vote_per_listener_in_the_voice_channel(world: World) -> None:
    server, other = world.servers.pop(), world.servers.pop()
    station = await on_air(world, server, server.alice, server.bob)
    play, message = await playing(world, server, station)
    await world.run(server, server.dj, "radio_pause")  # the song stays while votes come
    track = play.track.id
    like, dislike = f"radio:like:{track}", f"radio:dislike:{track}"
    assert counts(message, track) == ("0", "0")
    assert message.button(like)["emoji"]["name"] == "👍"

    _, answer = await press(world, server, server.alice, message, like)
    assert answer.ephemeral and "You like" in answer.content
    assert counts(message, track) == ("1", "0")
    _, answer = await press(world, server, server.alice, message, like)
    assert "liked" in answer.content and "already" in answer.content
    assert counts(message, track) == ("1", "0")  # one vote per listener
    await press(world, server, server.bob, message, dislike)
    assert counts(message, track) == ("1", "1")
    await press(world, server, server.bob, message, like)  # bob changes his mind
    assert counts(message, track) == ("2", "0")

    _, answer = await press(world, server, server.carol, message, like)  # not in the channel
    assert answer.ephemeral and "Only listeners can vote" in answer.content
    assert counts(message, track) == ("2", "0")
    tally = await asyncio.to_thread(station.store.reaction_tally, track)
    assert (tally.likes, tally.dislikes) == (2, 0)

    # Forged custom ids: another server's song, an unknown song, a number past any id.
    other_station = await on_air(world, other, other.alice)
    other_play, _ = await playing(world, other, other_station)
    for forged, refusal in [
        (f"radio:like:{other_play.track.id}", "not a song of this server"),
        ("radio:like:999999999", "unknown song 999999999"),
        ("radio:dislike:9999999999999999999", "positive integer id"),
    ]:
        _, answer = await press(world, server, server.alice, message.forged(forged), forged)
        assert answer.ephemeral and refusal in answer.content, answer.content
    other_tally = await asyncio.to_thread(station.store.reaction_tally, other_play.track.id)
    assert (other_tally.likes, other_tally.dislikes) == (0, 0)
    assert counts(message, track) == ("2", "0")
    await world.bot.radio.leave(server.id)
    await world.bot.radio.leave(other.id)


async def test_taste_shows_its_evidence_and_a_reset_clears_it(world: World, server: Server):
    """Alice and bob like every song with bright piano; the DJ skips the others at once.
    Taste is off meanwhile, so the songs keep their variety and both kinds come."""
    station = await on_air(world, server, server.alice, server.bob)
    _, answer = await world.run(server, server.dj, "radio_settings", taste="off")
    assert "Taste: off" in answer.text and not station.settings.taste
    liked = skipped = last = 0
    for _ in range(20):
        play, message = await playing(world, server, station, after=last)
        last = play.track.id
        if "bright piano" in caption_tags(play.track.spec.caption):
            for user in (server.alice, server.bob):
                await press(world, server, user, message, f"radio:like:{last}")
            liked += 1
        else:
            await world.run(server, server.dj, "radio_skip")
            skipped += 1
        if liked >= 2 and skipped >= 2:
            await world.run(server, server.dj, "radio_pause")  # no new plays meanwhile
            profile = await asyncio.to_thread(station.store.taste_profile, server.id)
            if profile.likes and profile.dislikes:
                break
            await world.run(server, server.dj, "radio_resume")

    _, answer = await world.run(server, server.alice, "radio_taste")
    assert "Taste is off" in answer.text
    assert "Auto songs lean to: nothing: taste is off" in answer.text
    await world.run(server, server.dj, "radio_settings", taste="on")
    profile = await asyncio.to_thread(station.store.taste_profile, server.id)
    assert profile.likes and profile.dislikes
    _, answer = await world.run(server, server.alice, "radio_taste")
    text = answer.text
    assert "What this server likes" in text and f"Learning from {profile.songs} songs" in text
    top, worst = profile.likes[0], profile.dislikes[0]
    assert f"**{top.feature.label}** +{top.score:.1f} · {top.songs} songs: " in text
    assert f"{top.evidence['like']} likes" in text
    assert f"**{worst.feature.label}** −{abs(worst.score):.1f}" in text
    assert "early skip" in text and "Auto songs lean to: more " in text

    _, answer = await world.run(server, server.alice, "radio_settings", taste="reset")
    assert answer.ephemeral and "Manage Server" in answer.content  # DJs only
    _, answer = await world.run(server, server.dj, "radio_settings", taste="reset")
    assert "Settings saved" in answer.content and station.settings.taste_since > 0
    _, answer = await world.run(server, server.alice, "radio_taste")
    assert "Likes: nothing clear yet" in answer.text
    assert "Dislikes: nothing clear yet" in answer.text
    assert "Learning from 0 songs since the reset" in answer.text
    _, answer = await world.run(server, server.dj, "radio_settings", taste="maybe")
    assert answer.ephemeral and "give on, off or reset" in answer.content
    # The stats tell the like ratio and the skip rate of the latest songs.
    _, answer = await world.run(server, server.alice, "radio_stats")
    assert "Reception (newest first): last " in answer.text and "👍" in answer.text
    await world.run(server, server.dj, "radio_resume")


async def test_save_sends_the_song_in_a_dm_or_says_why_not(world: World) -> None:
    server, other = world.servers.pop(), world.servers.pop()
    station = await on_air(world, server, server.alice, server.carol)
    other_station = await on_air(world, other, other.alice)
    await playing(world, server, station)
    await world.run(server, server.dj, "radio_pause")  # the song playing now stays
    other_play, _ = await playing(world, other, other_station)
    await world.bot.radio.leave(other.id)
    play = await world.fake.wait_for(lambda: station.now_playing, timeout=60)  # the paused one
    record = play.track
    _, answer = await world.run(server, server.alice, "radio_save")
    assert answer.ephemeral and "Sent **" in answer.content and "direct messages" in answer.content
    [dm] = world.fake.direct_messages[server.alice.id]
    [file] = dm.files
    assert file.data == record.path.read_bytes() and file.filename.endswith(f"-{record.id}.ogg")
    saved = Path(world.settings.data_dir) / "saved.ogg"
    saved.write_bytes(file.data)
    assert probe(saved).duration == pytest.approx(record.duration, abs=0.1)  # it plays
    embed = dm.embeds[0]
    sung = [line for line in record.spec.lyrics.splitlines() if line and not line.startswith("[")]
    assert sung and all(line in embed["description"] for line in sung)
    assert record.spec.title in embed["title"] and f"Seed: {record.track.seed}" in dm.text
    assert "Caption: " in dm.text and server.guild.name in dm.text

    server.carol.dms_open = False
    _, answer = await world.run(server, server.carol, "radio_save")
    assert answer.ephemeral and "cannot send you direct messages" in answer.content
    assert world.fake.refused_dms == [server.carol.id] and server.carol.id not in (world.fake.direct_messages)

    # A song chosen from the history by its number; forged and bad numbers are refused.
    _, history = await world.run(server, server.alice, "radio_history")
    assert f"`#{record.id}`" in history.text
    _, answer = await world.run(server, server.alice, "radio_save", song=f"#{record.id}")
    assert "Sent **" in answer.content and len(world.fake.direct_messages[server.alice.id]) == 2
    # Only this server's songs: another server's song is refused like an unknown one.
    for song, refusal in [
        (f"#{other_play.track.id}", "not a song of this server"),
        ("#999999999", "unknown song"),
        ("rain", "not a song number"),
        ("9" * 25, "not a song number"),
    ]:
        _, answer = await world.run(server, server.alice, "radio_save", song=song)
        assert answer.ephemeral and refusal in answer.content, answer.content
    assert len(world.fake.direct_messages[server.alice.id]) == 2
    await world.bot.radio.leave(server.id)
