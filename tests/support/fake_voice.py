"""A voice connection for tests, injected with `channel.connect(cls=...)`.

Real voice (voice gateway, UDP, DAVE encryption) cannot run against the fake
Discord, so `FakeVoice` replaces only the transport. It joins and leaves
through the real gateway (op 4, then waits for VOICE_STATE_UPDATE and
VOICE_SERVER_UPDATE, as `discord.VoiceClient` does), handles being
disconnected from outside like the real client (it disconnects and cleans up),
and plays through discord.py's own `AudioPlayer` thread: each 20 ms frame is
read from the `AudioSource`, encoded when it is PCM, and handed to
`send_audio_packet`, which decodes it with libopus to check it is real audio.
`frame_delay` paces the frames (0.02 s is real time; tests go faster, still
frame by frame). Every play is recorded in a `VoiceLog` for assertions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import discord
from discord.opus import Decoder, Encoder
from discord.player import AudioPlayer

OPUS_SILENCE = b"\xf8\xff\xfe"
OGG_HEADERS = (b"OpusHead", b"OpusTags")  # FFmpegOpusAudio passes these through as packets


@dataclass
class PlayedSource:
    """One `play()`: when it started, its frames, how it ended."""

    source: discord.AudioSource
    guild_id: int
    channel_id: int
    play_called: float
    frames: int = 0
    header_packets: int = 0
    silence_frames: int = 0
    pcm_samples: int = 0  # per channel, at 48 kHz, from decoding every frame
    first_frame: float | None = None
    last_frame: float | None = None
    frame_times: list[float] = field(default_factory=list)  # when each audio frame went out
    after_called: float | None = None
    error: Exception | None = None

    @property
    def seconds(self) -> float:
        """Seconds of audio that went out."""
        return self.pcm_samples / Decoder.SAMPLING_RATE

    @property
    def ended(self) -> bool:
        return self.after_called is not None


@dataclass
class VoiceLog:
    """Everything every `FakeVoice` of a test did."""

    plays: list[PlayedSource] = field(default_factory=list)
    connects: list[tuple[int, float]] = field(default_factory=list)  # channel id, time
    disconnects: list[tuple[int, float, bool]] = field(default_factory=list)  # ..., external
    lock: threading.Lock = field(default_factory=threading.Lock)

    def plays_in(self, guild_id: int) -> list[PlayedSource]:
        with self.lock:
            return [play for play in self.plays if play.guild_id == guild_id]


class _Speaker:
    """The part of the voice websocket that the audio player uses."""

    async def speak(self, state: Any = None) -> None:
        return None


class FakeVoice(discord.VoiceProtocol):
    """See the module docstring. Use `fake_voice_class(log)` to get one that records."""

    log: ClassVar[VoiceLog]
    frame_delay: ClassVar[float] = 0.02

    def __init__(self, client: discord.Client, channel: discord.abc.Connectable):
        super().__init__(client, channel)
        assert isinstance(channel, discord.VoiceChannel)
        self.channel: discord.VoiceChannel = channel
        self.guild = channel.guild
        self.timeout = 5.0
        self.ws = _Speaker()
        self.encoder: Encoder | None = None
        self._decoder = Decoder()
        self._connected = threading.Event()
        self._got_state = asyncio.Event()
        self._got_server = asyncio.Event()
        self._expect_disconnect = False
        self._player: AudioPlayer | None = None
        self._current: PlayedSource | None = None

    # --- connection -----------------------------------------------------------
    async def connect(
        self, *, timeout: float, reconnect: bool, self_deaf: bool = False, self_mute: bool = False
    ) -> None:
        self._got_state.clear()
        self._got_server.clear()
        await self.guild.change_voice_state(channel=self.channel, self_deaf=self_deaf, self_mute=self_mute)
        await asyncio.wait_for(asyncio.gather(self._got_state.wait(), self._got_server.wait()), timeout)
        self._connected.set()
        with self.log.lock:
            self.log.connects.append((self.channel.id, time.monotonic()))

    async def on_voice_state_update(self, data: Any) -> None:
        channel_id = data.get("channel_id")
        if channel_id is not None:
            channel = self.guild.get_channel(int(channel_id))
            if isinstance(channel, discord.VoiceChannel):
                self.channel = channel
            self._got_state.set()
            return
        if self._expect_disconnect:
            self._expect_disconnect = False
            return
        # Disconnected from outside (kicked, channel deleted): like discord.VoiceClient.
        await self._shut(external=True)

    async def on_voice_server_update(self, data: Any) -> None:
        self._got_server.set()

    async def disconnect(self, *, force: bool = False) -> None:
        if not self._connected.is_set() and not force:
            return
        self._expect_disconnect = True
        await self.guild.change_voice_state(channel=None)
        await self._shut(external=False)

    async def _shut(self, *, external: bool) -> None:
        self.stop()
        if self._connected.is_set():
            self._connected.clear()
            with self.log.lock:
                self.log.disconnects.append((self.channel.id, time.monotonic(), external))
        self.cleanup()

    async def move_to(self, channel: discord.abc.Snowflake | None, *, timeout: float = 30) -> None:
        if channel is None:
            await self.disconnect(force=True)
            return
        self._got_state.clear()
        await self.guild.change_voice_state(channel=channel)
        await asyncio.wait_for(self._got_state.wait(), timeout)

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def wait_until_connected(self, timeout: float | None = 30.0) -> bool:
        return self._connected.wait(timeout)

    # --- playing (the subset of discord.VoiceClient the bot uses) --------------
    def play(self, source: discord.AudioSource, *, after: Any = None, **options: Any) -> None:
        if not self.is_connected():
            raise discord.ClientException("Not connected to voice.")
        if self.is_playing():
            raise discord.ClientException("Already playing audio.")
        if not isinstance(source, discord.AudioSource):
            raise TypeError(f"source must be an AudioSource not {source.__class__.__name__}")
        if not source.is_opus() and self.encoder is None:
            self.encoder = Encoder()
        record = PlayedSource(source, self.guild.id, self.channel.id, time.monotonic())
        with self.log.lock:
            self.log.plays.append(record)
        self._current = record

        def finished(error: Exception | None) -> None:
            record.after_called = time.monotonic()
            record.error = error
            if after is not None:
                after(error)

        player = AudioPlayer(source, self, after=finished)  # type: ignore[arg-type]
        player.DELAY = self.frame_delay
        self._player = player
        player.start()

    def send_audio_packet(self, data: bytes, *, encode: bool = True) -> None:
        record = self._current
        if record is None:
            return
        if encode:
            assert self.encoder is not None
            data = self.encoder.encode(data, Encoder.SAMPLES_PER_FRAME)
        now = time.monotonic()
        if data == OPUS_SILENCE:
            record.silence_frames += 1
            return
        if data.startswith(OGG_HEADERS):
            record.header_packets += 1
            return
        pcm = self._decoder.decode(data)  # raises OpusError for anything but Opus audio
        record.pcm_samples += len(pcm) // (2 * Decoder.CHANNELS)
        record.frames += 1
        record.frame_times.append(now)
        if record.first_frame is None:
            record.first_frame = now
        record.last_frame = now

    def is_playing(self) -> bool:
        return self._player is not None and self._player.is_playing()

    def is_paused(self) -> bool:
        return self._player is not None and self._player.is_paused()

    def pause(self) -> None:
        if self._player is not None:
            self._player.pause()

    def resume(self) -> None:
        if self._player is not None:
            self._player.resume()

    def stop(self) -> None:
        if self._player is not None:
            self._player.stop()
            self._player = None

    @property
    def source(self) -> discord.AudioSource | None:
        return self._player.source if self._player is not None else None


def fake_voice_class(log: VoiceLog, frame_delay: float = 0.02) -> type[FakeVoice]:
    """A `FakeVoice` subclass that records into `log` and paces frames `frame_delay` apart."""
    return type("RecordingFakeVoice", (FakeVoice,), {"log": log, "frame_delay": frame_delay})
