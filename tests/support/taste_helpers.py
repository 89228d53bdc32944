"""Putting a server's station on air and pressing its 👍/👎 buttons, through the fake Discord."""

from __future__ import annotations

from bot.station import Station
from bot.store import Play
from tests.support.bot_world import Server, World
from tests.support.fake_discord import FakeInteraction, FakeMessage, FakeUser


async def on_air(world: World, server: Server, *listeners: FakeUser) -> Station:
    for user in listeners:
        await server.guild.set_voice(user, server.lounge)
    await server.guild.set_voice(server.admin, server.lounge)
    _, message = await world.run(server, server.admin, "radio_join")
    assert "On air" in message.content, message.text
    station = world.bot.radio.known_station(server.id)
    assert station is not None
    return station


def message_of(world: World, server: Server, track_id: int) -> FakeMessage | None:
    """The now-playing message of `track_id` in the server's text channel, with buttons."""
    for message in world.fake.channel_messages.get(server.text.id, []):
        if any(b["custom_id"] == f"radio:like:{track_id}" for b in message.buttons):
            return message
    return None


async def playing(world: World, server: Server, station: Station, after: int = 0):
    """The play in progress (of another track than `after`) and its now-playing message."""
    play: Play = await world.fake.wait_for(
        lambda: (p := station.now_playing) is not None and p.track.id != after and p, timeout=120
    )
    message = await world.fake.wait_for(lambda: message_of(world, server, play.track.id), 60)
    return play, message


async def press(
    world: World, server: Server, user: FakeUser, message: FakeMessage, custom_id: str
) -> tuple[FakeInteraction, FakeMessage]:
    interaction = await world.fake.press(server.guild, user, message, custom_id)
    return interaction, await world.fake.answer(interaction)


def counts(message: FakeMessage, track_id: int) -> tuple[str, str]:
    return (
        message.button(f"radio:like:{track_id}")["label"],
        message.button(f"radio:dislike:{track_id}")["label"],
    )
