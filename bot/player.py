"""VoicePlayer: plays a station's tracks into one guild's voice channel.

It is the station's `Player` (see bot.station): `play(record)` starts the track
and returns when it ended. discord.py plays on its own
audio thread and calls `after` there; `after` only hands the result back to
the event loop (`call_soon_threadsafe`), where the station's play loop starts
the next track at once. Ogg/Opus files (what the worker writes, and what
uploads are converted to) go out packet by packet as they are, without any
process (`bot.ogg_source.OggOpusFile`); its two header packets (OpusHead,
OpusTags) are read, not sent as if they were 20 ms frames. Other formats are
encoded by ffmpeg (`TrackSource`, which drops the header packets of ffmpeg's
Ogg output too). Opening takes a moment, so `prepare(record)` opens the next
track's source while the current one plays and reads up to its first audio
packet; then that frame goes out the moment the current one ends.
Opening a source (reading its headers, or spawning ffmpeg) and closing one run in
threads: nothing here blocks the event loop.

The connection: `connect(channel)` joins or moves; the player remembers the
channel and, when the voice connection was lost (kicked, a network failure the
library could not mend), reconnects before the next track, a few times with a
pause between tries. When that fails, `on_lost` is called and `play` waits for
`stop()` instead of racing through the buffer. The voice class is injectable
(`voice_cls`): discord.VoiceClient in production, a fake one in tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import discord

from bot.ogg_source import OggOpusFile
from bot.store import TrackRecord
from engine.background import BackgroundTasks

log = logging.getLogger("bot.player")

#: Seconds to wait before each reconnection attempt after the voice connection was lost.
RECONNECT_DELAYS = (0.0, 2.0, 5.0)
CONNECT_TIMEOUT = 20.0
#: Files whose Opus packets go to Discord as they are, without re-encoding.
OPUS_SUFFIXES = (".ogg", ".opus")
#: The Ogg/Opus stream's header packets: not audio.
OPUS_HEADERS = (b"OpusHead", b"OpusTags")


class VoiceUnavailableError(RuntimeError):
    """The player could not (re)connect to its voice channel."""


class TrackSource(discord.FFmpegOpusAudio):
    """ffmpeg's Opus packets of one track, without the stream's header packets;
    `prime()` reads the first audio packet ahead, so `read()` has it at once."""

    def __init__(self, path: Path, **options: Any):
        super().__init__(str(path), **options)
        self._first: bytes | None = None

    def prime(self) -> None:
        """Wait for ffmpeg's first audio packet and keep it (blocking)."""
        if self._first is None:
            self._first = self._next_audio()

    def _next_audio(self) -> bytes:
        while True:
            packet = super().read()
            if not packet.startswith(OPUS_HEADERS):
                return packet  # b"" at the end

    def read(self) -> bytes:
        if self._first is not None:
            packet, self._first = self._first, None
            return packet
        return self._next_audio()


def open_source(path: Path) -> discord.AudioSource:
    """Open `path` for voice, up to its first audio packet (blocking: call it in a
    thread); `OSError` when it cannot be."""
    if not path.is_file():
        raise FileNotFoundError(f"track file {path} is missing")
    if path.suffix.lower() in OPUS_SUFFIXES:
        return OggOpusFile(path)
    source = TrackSource(path, bitrate=128)
    try:
        source.prime()
    except BaseException:
        source.cleanup()
        raise
    return source


class VoicePlayer:
    """One guild's voice connection and playback. See the module docstring."""

    def __init__(
        self,
        client: discord.Client,
        guild_id: int,
        *,
        voice_cls: Callable[..., Any] = discord.VoiceClient,
        on_start: Callable[[TrackRecord], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
    ):
        self.client = client
        self.guild_id = guild_id
        self.voice_cls = voice_cls
        self.on_start = on_start
        self.on_lost = on_lost
        self.reconnect_delays = reconnect_delays
        self.channel_id: int | None = None  # where the radio should be; None: nowhere
        self.current: TrackRecord | None = None
        self._connect_lock = asyncio.Lock()
        self._cut = False
        self._hold = False  # paused by the station: new tracks start paused too
        self._released = asyncio.Event()  # set by stop(): ends a play that cannot connect
        self._started = 0.0
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._prepared: tuple[Path, asyncio.Task[discord.AudioSource]] | None = None

    # --- the connection -------------------------------------------------------
    @property
    def voice(self) -> discord.VoiceProtocol | None:
        guild = self.client.get_guild(self.guild_id)
        return guild.voice_client if guild is not None else None

    @property
    def connected(self) -> bool:
        voice = self.voice
        return voice is not None and _is_connected(voice)

    @property
    def channel(self) -> discord.VoiceChannel | None:
        """The voice channel the radio is in (or should be in)."""
        guild = self.client.get_guild(self.guild_id)
        if guild is None or self.channel_id is None:
            return None
        channel = guild.get_channel(self.channel_id)
        return channel if isinstance(channel, discord.VoiceChannel) else None

    async def connect(self, channel: discord.VoiceChannel) -> None:
        """Join `channel`, or move there when already connected elsewhere in the guild."""
        self.channel_id = channel.id
        async with self._connect_lock:
            voice = self.voice
            if voice is not None and _is_connected(voice):
                if getattr(voice, "channel", None) != channel:
                    await voice.move_to(channel)  # type: ignore[attr-defined]
                return
            if voice is not None:  # a dead connection still registered: clear it first
                await voice.disconnect(force=True)
            await channel.connect(cls=self.voice_cls, timeout=CONNECT_TIMEOUT, self_deaf=True)
            log.info("guild %d: connected to voice channel %d", self.guild_id, channel.id)

    async def ensure_connected(self) -> discord.VoiceProtocol:
        """The live voice connection, reconnecting to `channel_id` if it was lost."""
        voice = self.voice
        if voice is not None and _is_connected(voice):
            return voice
        last = "the radio is not in a voice channel"
        for delay in self.reconnect_delays:
            channel = self.channel
            if channel is None:
                break
            if delay:
                await asyncio.sleep(delay)  # back off between attempts
            if self.channel_id is None:  # left meanwhile
                break
            log.warning("guild %d: voice connection lost; reconnecting", self.guild_id)
            try:
                await self.connect(channel)
            except (asyncio.TimeoutError, discord.ClientException, OSError) as exc:
                last = f"cannot reconnect to #{channel.name}: {exc or type(exc).__name__}"
                log.warning("guild %d: %s", self.guild_id, last)
                continue
            voice = self.voice
            if voice is not None and _is_connected(voice):
                return voice
        raise VoiceUnavailableError(last)

    async def disconnect(self) -> None:
        """Stop and leave the voice channel for good (no reconnection)."""
        self.channel_id = None
        self.stop()
        await self._drop_prepared()
        voice = self.voice
        if voice is not None:
            await voice.disconnect(force=True)

    # --- the station's Player -------------------------------------------------
    def prepare(self, record: TrackRecord) -> None:
        """Open `record`'s source ahead of time, so `play(record)` starts without a gap."""
        if self._prepared is not None and self._prepared[0] == record.path:
            return
        self._spawn_drop_prepared()
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(open_source, record.path))
        self._prepared = (record.path, task)

    async def play(self, record: TrackRecord) -> bool:
        """Play `record`; True when it played to its end, False when it was cut short
        (`stop()`, a lost connection). Raises `OSError` when its file cannot be read."""
        self._cut = False
        self._released.clear()
        try:
            voice = await self.ensure_connected()
        except VoiceUnavailableError as exc:
            if self.on_lost is not None:
                self.on_lost(str(exc))
            await self._released.wait()  # the radio stops us; do not race through the buffer
            return False
        source = await self._take_source(record.path)
        if self._cut:  # stopped while the source was opening
            await asyncio.to_thread(source.cleanup)
            return False
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[Exception | None] = loop.create_future()

        def after(error: Exception | None) -> None:  # on the audio thread
            loop.call_soon_threadsafe(_settle, ended, error)

        try:
            voice.play(source, after=after, signal_type="music")  # type: ignore[attr-defined]
        except discord.ClientException as exc:  # disconnected meanwhile
            log.warning("guild %d: cannot play %r: %s", self.guild_id, record.title, exc)
            await asyncio.to_thread(source.cleanup)
            return False
        self.current = record
        self._started = time.monotonic()
        self._paused_at = None
        self._paused_total = 0.0
        if self._hold:  # paused between tracks (e.g. a skip while paused): stay paused
            self.pause()
        if self.on_start is not None:
            self.on_start(record)
        error = await ended
        self.current = None
        if error is not None:
            log.warning("guild %d: playing %r failed: %s", self.guild_id, record.title, error)
            return False
        return not self._cut and self.connected

    def stop(self) -> None:
        """Cut the current track short (the station then plays the next one)."""
        self._cut = True
        self._released.set()
        voice = self.voice
        if voice is not None and hasattr(voice, "stop"):
            voice.stop()

    def pause(self) -> None:
        """Pause now and stay paused, also across a skip, until `resume()`."""
        self._hold = True
        voice = self.voice
        if voice is not None and self._paused_at is None and self.current is not None:
            voice.pause()  # type: ignore[attr-defined]
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        self._hold = False
        voice = self.voice
        if voice is not None and self._paused_at is not None:
            voice.resume()  # type: ignore[attr-defined]
            self._paused_total += time.monotonic() - self._paused_at
            self._paused_at = None

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    @property
    def elapsed(self) -> float:
        """Seconds of the current track played so far (pauses not counted)."""
        if self.current is None:
            return 0.0
        now = self._paused_at if self._paused_at is not None else time.monotonic()
        return max(0.0, now - self._started - self._paused_total)

    # --- sources --------------------------------------------------------------
    async def _take_source(self, path: Path) -> discord.AudioSource:
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared_path, task = prepared
            if prepared_path == path:
                try:
                    return await task
                except OSError:
                    pass  # opened too early (e.g. moved since): try once more below
            else:
                self._spawn_cleanup(task)
        return await asyncio.to_thread(open_source, path)

    def _spawn_drop_prepared(self) -> None:
        if self._prepared is not None:
            self._spawn_cleanup(self._prepared[1])
            self._prepared = None

    async def _drop_prepared(self) -> None:
        if self._prepared is not None:
            task = self._prepared[1]
            self._prepared = None
            await _cleanup(task)

    def _spawn_cleanup(self, task: asyncio.Task[discord.AudioSource]) -> None:
        _background.spawn(_cleanup(task))


_background = BackgroundTasks(log, "closing an unplayed source")


async def _cleanup(task: asyncio.Task[discord.AudioSource]) -> None:
    """Close a source that will not be played (its file, or its ffmpeg)."""
    try:
        source = await task
    except OSError:
        return
    await asyncio.to_thread(source.cleanup)


def _settle(future: asyncio.Future[Exception | None], error: Exception | None) -> None:
    if not future.done():
        future.set_result(error)


def _is_connected(voice: discord.VoiceProtocol) -> bool:
    is_connected = getattr(voice, "is_connected", None)
    return bool(is_connected()) if callable(is_connected) else False
