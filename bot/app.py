"""RadioBot and `python -m bot`: the radio on Discord.

`setup_hook` (after login, before the gateway connects) opens the store and
the adapter trainer service (bot.training.runs), which first deals with a run
a killed bot left behind (bot.training.record); only then does it start the
GPU worker and the stations, register the persistent 👍/👎 buttons
(bot.taste.buttons), load the cogs and sync the slash commands: to the
`DEV_GUILD_ID` server only when it is set (they show at once), else globally.
A worker that cannot start (no checkpoint, say) is logged and the bot runs on:
stations replay their libraries and say why.

`main()` reads `.env`, then removes the token from the environment so that
no child process (worker, trainer, ffmpeg) inherits it; a missing or refused
`DISCORD_TOKEN`, a bad setting, an unreachable Discord or (with
`WORKER_BACKEND=ray`) an unreachable Ray cluster each end with one clear line,
not a traceback.

The bot is an `AutoShardedBot`: Discord says how many gateway shards it needs
(one per 2,500 servers at most), or `SHARD_COUNT` sets it; one process runs
them all (docs/scaling.md). SIGINT and SIGTERM shut down cleanly: a training
run is stopped first (what it learnt is exported), then playback stops, the
stations and the database are closed (everything the radio knows is already
in SQLite) and the worker stops; each step runs even when one before failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.ownership import Owners, TrainingAccess
from bot.radio import Radio
from bot.replies import NO_MENTIONS, on_command_error
from bot.settings import BotSettings, load_bot_settings
from bot.station.manager import StationManager, isolated, manager_from_settings
from bot.store import StoreError, TrainingRunRow
from bot.taste.buttons import ReactionButton
from bot.training.board import ProgressMessage, training_text
from bot.training.buttons import OnAirButton
from bot.training.progress import ProgressCallback
from bot.training.queue import TrainingQueue
from bot.training.runs import TrainingRuns
from engine.logs import setup_logging
from engine.settings import SettingsError, default_env_file, drop_secrets_from_environment
from engine.worker.client import WorkerStartError
from engine.worker.process import WorkerConfig

log = logging.getLogger("bot.app")

COGS = (
    "bot.commands.listening",
    "bot.commands.dj",
    "bot.commands.adapters",
    "bot.commands.training",
    "bot.commands.datasets",
    "bot.commands.taste",
    "bot.commands.voice_events",
)
EXIT_USAGE = 2
#: The loss curve on a run's progress message is drawn again every this many polls.
CURVE_EVERY_POLLS = 15


class RadioBot(commands.AutoShardedBot):
    """The radio. `stations` and `radio` exist once `setup_hook` has run."""

    def __init__(
        self,
        settings: BotSettings,
        *,
        voice_cls: Callable[..., Any] = discord.VoiceClient,
        worker_config: WorkerConfig | None = None,
        training_options: dict[str, Any] | None = None,
        **options: Any,
    ):
        """`training_options` go to `TrainingRuns` (tests: tiny runs, a short poll)."""
        intents = discord.Intents.none()
        intents.guilds = True
        intents.voice_states = True  # who listens where; no privileged intent is needed
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            shard_count=settings.shard_count,
            **options,
        )
        self.settings = settings
        self.voice_cls = voice_cls
        self.worker_config = worker_config or WorkerConfig.from_settings(settings)
        self._stations: StationManager | None = None
        self._radio: Radio | None = None
        self._training: TrainingRuns | None = None
        self._queue: TrainingQueue | None = None
        self.training_options = training_options or {}
        self.training_access = TrainingAccess(Owners(self, settings.owner_ids), settings.training_guilds)
        self._restored = False

    @property
    def stations(self) -> StationManager:
        if self._stations is None:
            raise RuntimeError("the stations start in setup_hook")
        return self._stations

    @property
    def radio(self) -> Radio:
        if self._radio is None:
            raise RuntimeError("the radio starts in setup_hook")
        return self._radio

    @property
    def radio_if_running(self) -> Radio | None:
        """The radio, or None before setup_hook and after close (late gateway events)."""
        return self._radio

    @property
    def training(self) -> TrainingRuns:
        if self._training is None:
            raise RuntimeError("the trainer service starts in setup_hook")
        return self._training

    @property
    def training_queue(self) -> TrainingQueue:
        if self._queue is None:
            raise RuntimeError("the training queue starts in setup_hook")
        return self._queue

    async def setup_hook(self) -> None:
        manager = await asyncio.to_thread(manager_from_settings, self.settings, self.worker_config)
        self._stations = manager
        self._training = TrainingRuns(
            manager, self.settings, place=training_place(self.settings), **self.training_options
        )
        # Before the worker: a trainer left by a killed bot must not share the GPU with it.
        await self._training.recover()
        log.info("starting the music worker (loading the models)...")
        try:
            await manager.client.start()
        except WorkerStartError as exc:
            log.error("the music worker cannot start: %s; the radio runs without new songs", exc)
        await manager.start()
        self._queue = TrainingQueue(self._training, manager.store, self.settings, self._reporter)
        await self._queue.load()  # runs still queued start once the bot is ready
        self._radio = Radio(self, manager, self.settings, voice_cls=self.voice_cls)
        self.tree.error(on_command_error)
        # The 👍/👎 and on-air buttons answer by their custom id, also on messages from
        # before a restart.
        self.add_dynamic_items(ReactionButton, OnAirButton)
        for cog in COGS:
            await self.load_extension(cog)
        await self.sync_commands()

    async def sync_commands(self) -> None:
        guild_id = self.settings.dev_guild_id
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to server %d (DEV_GUILD_ID)", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d commands globally (Discord may take a while to show them)", len(synced))

    async def on_ready(self) -> None:
        log.info("logged in as %s in %d server(s)", self.user, len(self.guilds))
        if not self._restored:
            self._restored = True
            await self.radio.restore()
            await self._announce_recovered_run()
            await self.training_queue.kick()

    def _reporter(self, row: TrainingRunRow) -> ProgressCallback | None:
        """How a run shows in Discord: a progress message in the channel it came from."""
        channel = self.get_channel(row.channel_id) if row.channel_id else None
        if not isinstance(channel, discord.abc.Messageable):
            return None
        training = self.training
        board = ProgressMessage(
            channel,
            lambda: (training.history, training.val_history),
            image_seconds=CURVE_EVERY_POLLS * training.poll_seconds,
        )
        return board.show

    async def _announce_recovered_run(self) -> None:
        """Tell the server whose training run a restart interrupted what became of it."""
        found = self.training.recovered
        if found is None or found[1] is None:
            return
        progress, channel_id = found
        channel = self.get_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return
        try:
            await channel.send(training_text(progress), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("cannot tell channel %d about the interrupted run: %s", channel_id, exc)

    async def close(self) -> None:
        """Stop training first, then playback, the stations, the worker and the database,
        then Discord. Each step runs even when one before it failed (it is logged)."""
        training, stations, radio = self._training, self._stations, self._radio
        queue = self._queue
        self._training = self._radio = self._stations = self._queue = None
        try:
            if queue is not None:
                await isolated("closing the training queue", queue.close())
            # The trainer first: it holds the GPU, and generation must not resume on
            # the way out. Then the stations: they keep the song playing now open in
            # the store, so the next start plays it again; then voice is left.
            if training is not None:
                await isolated("stopping the training run", training.close())
            if stations is not None:
                await isolated("closing the stations", stations.close())
            if radio is not None:
                await isolated("leaving voice", radio.close())
            if stations is not None:
                await isolated("closing the database", asyncio.to_thread(stations.store.close))
        finally:
            await super().close()


async def run(settings: BotSettings, **options: Any) -> int:
    """Run the radio as the settings say until SIGINT/SIGTERM; return the exit status."""
    assert settings.discord_token is not None
    return await serve(RadioBot(settings, **options), settings.discord_token.get_secret_value())


async def serve(bot: RadioBot, token: str) -> int:
    """Run `bot` until SIGINT/SIGTERM, then shut it down cleanly; return the exit status.

    What keeps the bot from running ends in one line on stderr (exit status 1).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with bot:
            runner = asyncio.create_task(bot.start(token))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not runner.done():
                log.info("shutting down...")
                await bot.close()
            await runner  # raises what ended the bot, if anything did
    except discord.LoginFailure:
        return fail(
            "Discord refused DISCORD_TOKEN: copy the bot's token again from the developer "
            "portal (Bot > Reset Token) into .env. See docs/discord-setup.md."
        )
    except (aiohttp.ClientConnectionError, discord.GatewayNotFound) as exc:
        return fail(f"cannot reach Discord ({exc}): check the network connection.")
    except StoreError as exc:
        return fail(f"the radio's database cannot be used: {exc}")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("stopped")
    return 0


def training_place(settings: BotSettings) -> Any:
    """Where adapters train: None (this machine, songs paused) or the Ray cluster."""
    if settings.worker_backend != "ray":
        return None
    from training.ray_launcher import RayTrainingPlace

    return RayTrainingPlace(gpus=settings.ray_training_gpus)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main() -> int:
    try:
        settings = load_bot_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    drop_secrets_from_environment()
    if settings.discord_token is None:
        print(
            "error: DISCORD_TOKEN is not set. Put your bot's token in .env "
            "(DISCORD_TOKEN=...; docs/discord-setup.md shows how to get one). To try the radio "
            "without Discord: .venv/bin/python -m bot.local",
            file=sys.stderr,
        )
        return EXIT_USAGE
    setup_logging(settings.log_level, settings.secrets, settings.log_file)
    warn_if_readable(default_env_file())
    if settings.worker_backend == "ray":
        from engine.worker.cluster.connect import ClusterUnreachableError, connect

        try:
            connect(settings.ray_address)
        except ClusterUnreachableError as exc:
            return fail(str(exc))
    return asyncio.run(run(settings))


def warn_if_readable(env_file: Path) -> None:
    """`.env` holds the token: say so when other users of the machine can read it."""
    try:
        mode = env_file.stat().st_mode
    except OSError:
        return
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s can be read by other users of this machine and holds the bot's token: chmod 600 %s", env_file, env_file
        )
