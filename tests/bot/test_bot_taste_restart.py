"""👍/👎 buttons and favourites across a restart of the bot, and favourites first in the
library replay: the real bot on the fake Discord, stopped and started again on the
same database, with the real worker (tiny checkpoint, template songwriter)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.station import Station
from tests.support.bot_world import World, add_server, start_bot, world_settings
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_voice import VoiceLog
from tests.support.taste_helpers import counts, on_air, playing, press


async def replays(station: Station, after_play: int) -> list:
    plays = await asyncio.to_thread(station.store.history, station.guild_id, 50)
    return [p for p in reversed(plays) if p.id > after_play and p.source == "replay"]


async def test_votes_and_favourites_survive_a_restart_and_replay_first(
    tmp_path: Path, tiny_checkpoint_dir: Path
) -> None:
    async with FakeDiscord() as fake:
        server = add_server(fake, "server")
        settings = world_settings(tmp_path, tiny_checkpoint_dir, fake.token)
        voice = VoiceLog()
        async with start_bot(fake, settings, voice) as bot:
            world = World(fake, bot, voice, settings, [server])
            station = await on_air(world, server, server.alice, server.bob)
            favorites, last, first_message = [], 0, None
            for number in range(4):  # alice likes the first and the third song
                play, message = await playing(world, server, station, after=last)
                last = play.track.id
                first_message = first_message or message
                if number in (0, 2):
                    await press(world, server, server.alice, message, f"radio:like:{last}")
                    favorites.append(last)
            first = favorites[0]
            assert counts(first_message, first) == ("1", "0")

            _, answer = await world.run(server, server.alice, "radio_favorites")
            assert all(f"`#{track}`" in answer.text for track in favorites)
            _, answer = await world.run(server, server.alice, "radio_favorites", queue=f"#{first}")
            assert answer.ephemeral and "Only a DJ" in answer.content
            second = favorites[1]
            _, answer = await world.run(server, server.dj, "radio_favorites", queue=f"#{last}")
            assert answer.ephemeral and "is not a favourite" in answer.content
            _, answer = await world.run(server, server.dj, "radio_favorites", queue=f"#{first}")
            assert "is back in the queue" in answer.content
            again = await world.fake.wait_for(
                lambda: (p := station.now_playing) and p.track.id == first and p, timeout=120
            )
            assert again.source == "replay"
            await world.fake.wait_for(lambda: station.now_playing != again, timeout=120)

        # The restart, this time without a music worker (its checkpoint is gone): the
        # radio goes back on air where alice and bob listen, plays what it had
        # buffered, then replays its library, two replays in three from the favourites.
        settings = world_settings(tmp_path, tmp_path / "checkpoint-gone", fake.token)
        async with start_bot(fake, settings, voice) as bot:
            world = World(fake, bot, voice, settings, [server])
            await fake.wait_for(lambda: bot.radio.voice_channel(server.id), timeout=120)
            station = bot.radio.known_station(server.id)
            assert station is not None
            # A button on a message the first bot posted still counts.
            await server.guild.set_voice(server.carol, server.lounge)
            assert first_message is not None
            _, answer = await press(world, server, server.carol, first_message, f"radio:like:{first}")
            assert "You like" in answer.content and counts(first_message, first) == ("2", "0")
            _, answer = await world.run(server, server.bob, "radio_favorites")
            assert all(f"`#{track}`" in answer.text for track in favorites)

            library = await asyncio.to_thread(station.store.library, server.id)
            assert len(favorites) * 2 <= len(library)  # favourites are a minority
            replayed = await fake.wait_for(lambda: _at_least(replays(station, 0), 4), 120)
            # The first replay was the DJ's; then the library: favourites first.
            assert replayed[0].track.id == first
            picked = [play.track.id for play in replayed[1:4]]
            assert sum(track in (first, second) for track in picked) == 2, (picked, favorites)


async def _at_least(found, count: int):
    result = await found
    return result if len(result) >= count else None
