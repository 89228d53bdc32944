"""The radio bot on a fake Discord, with the real worker: shared by the bot's tests.

`start_bot(...)` runs the real `RadioBot` (real discord.py over HTTP and a
websocket to `tests.support.fake_discord`, real SQLite, the real worker process with
the tiny checkpoint and the template songwriter, real ffmpeg) with
`tests.support.fake_voice` as its voice connection, and stops it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord

from bot.app import RadioBot
from bot.settings import BotSettings
from tests.support.fake_discord import (
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeRole,
    FakeUser,
)
from tests.support.fake_voice import VoiceLog, fake_voice_class
from tests.support.radio_helpers import radio_settings, template_worker

#: Seconds between two 20 ms frames in tests: 4x real time, still frame by frame.
FRAME_DELAY = 0.005


@dataclass
class Server:
    """One fake guild with the people a radio test needs."""

    guild: FakeGuild
    text: FakeChannel
    lounge: FakeChannel  # voice
    hall: FakeChannel  # another voice channel
    admin_role: FakeRole
    dj_role: FakeRole
    admin: FakeUser  # Manage Server
    dj: FakeUser  # the DJ role, nothing else
    alice: FakeUser
    bob: FakeUser
    carol: FakeUser

    @property
    def id(self) -> int:
        return self.guild.id


def add_server(fake: FakeDiscord, name: str, owner: FakeUser | None = None) -> Server:
    """A guild with an admin, a DJ and three listeners; owned by `owner` (default: the
    application's owner, as when the bot's developer invites it to their own server)."""
    guild = fake.add_guild(name, owner)
    admin_role = guild.add_role("Admin", discord.Permissions(manage_guild=True).value)
    dj_role = guild.add_role("DJ")
    return Server(
        guild=guild,
        text=guild.add_channel("radio"),
        lounge=guild.add_channel("Lounge", voice=True),
        hall=guild.add_channel("Hall", voice=True),
        admin_role=admin_role,
        dj_role=dj_role,
        admin=fake.add_user(guild, "Ada Admin", admin_role),
        dj=fake.add_user(guild, "Dee Jay", dj_role),
        alice=fake.add_user(guild, "alice"),
        bob=fake.add_user(guild, "bob"),
        carol=fake.add_user(guild, "carol"),
    )


@dataclass
class World:
    fake: FakeDiscord
    bot: RadioBot
    voice: VoiceLog
    settings: BotSettings
    servers: list[Server] = field(default_factory=list)

    async def run(
        self, server: Server, user: FakeUser, command: str, /, **options: Any
    ) -> tuple[FakeInteraction, FakeMessage]:
        """`user` runs `/command ...` in the server's text channel; wait for the answer."""
        interaction = await self.fake.invoke(server.guild, user, command, server.text, **options)
        message = await self.fake.answer(interaction)
        return interaction, message


def world_settings(root: Path, checkpoint: Path, token: str, **changes: Any) -> BotSettings:
    values: dict[str, Any] = {
        "discord_token": token,
        "buffer_size": 1,
        "idle_disconnect_seconds": 0,
        "max_length_max": 60,
        **changes,
    }
    return radio_settings(root, checkpoint, **values)


def make_bot(
    settings: BotSettings,
    voice: VoiceLog,
    training: dict[str, Any] | None = None,
    frame_delay: float = FRAME_DELAY,
    **worker: Any,
) -> RadioBot:
    """The real bot with the fake voice connection and the tiny-model worker;
    `training` are `TrainingRuns` options."""
    return RadioBot(
        settings,
        voice_cls=fake_voice_class(voice, frame_delay),
        worker_config=template_worker(settings, **worker),
        training_options=training,
        guild_ready_timeout=0.05,
    )


@contextlib.asynccontextmanager
async def start_bot(
    fake: FakeDiscord,
    settings: BotSettings,
    voice: VoiceLog,
    training: dict[str, Any] | None = None,
    frame_delay: float = FRAME_DELAY,
    **worker: Any,
) -> AsyncIterator[RadioBot]:
    """Run the bot until the block ends; it is logged in and has every guild then."""
    bot = make_bot(settings, voice, training, frame_delay, **worker)
    async with bot:
        runner = asyncio.create_task(bot.start(fake.token))
        ready = asyncio.create_task(bot.wait_until_ready())
        await asyncio.wait({runner, ready}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            ready.cancel()
            runner.result()  # raises why the bot did not start
        assert ready.done(), "the bot was not ready within 120 s"
        try:
            yield bot
        finally:
            await bot.close()
            await runner
