"""Playing: the loop that hands the player the next track the moment the current one
ends, replays the library while no fresh songs are made, and counts underruns.
"""

from __future__ import annotations

import asyncio
import logging

from bot.station.base import StationBase
from bot.station.config import Player
from bot.store import Play, StoreError, TrackRecord

log = logging.getLogger("bot.station")


class _StopPlaying(Exception):
    """The play loop was asked to stop while it waited for a track."""


class PlayLoop(StationBase):
    """The station's part that plays; see the module docstring."""

    # --- playing --------------------------------------------------------------
    async def start(self, player: Player) -> None:
        """Start playing into `player`; returns at once."""
        if self._play_task is not None and not self._play_task.done():
            raise RuntimeError(f"station {self.guild_id} is already playing")
        self._player = player
        self._stopping = False
        self._paused = False
        # Off air, auto-fill songs may have been pruned for disk space (StationManager).
        self._buffer = await self._db(self.store.buffered_tracks, self.guild_id)
        self._play_task = asyncio.get_running_loop().create_task(self._play_loop())
        await self.top_up()

    async def stop(self) -> None:
        """Stop playing (the current track counts as skipped); the buffer is kept."""
        self._stopping = True
        self._notify()
        if self._player is not None:
            self._player.stop()
        if self._play_task is not None:
            await asyncio.gather(self._play_task, return_exceptions=True)
            self._play_task = None
            await self.top_up()  # off air: withdraw the auto-fill jobs still waiting

    def set_audience(self, listening: bool) -> None:
        """Whether anyone listens (the Discord side counts the voice channel).

        While nobody does the station plays on but queues no auto-fill songs."""
        if listening != self._audience:
            self._audience = listening
            self._spawn(self.top_up())

    def skip(self) -> Play | None:
        """Cut the current track short; the next one starts at once."""
        play = self._now
        if play is not None and self._player is not None:
            self._player.stop()
        return play

    def pause(self) -> None:
        if self._player is not None and not self._paused:
            self._paused = True
            self._player.pause()

    def resume(self) -> None:
        if self._player is not None and self._paused:
            self._paused = False
            self._player.resume()

    @property
    def playing(self) -> bool:
        """True while the play loop runs (even while paused or waiting for a song)."""
        return self._play_task is not None and not self._play_task.done()

    @property
    def buffered(self) -> tuple[TrackRecord, ...]:
        """The finished tracks waiting to play, oldest first (requests play first)."""
        return tuple(self._buffer)

    @property
    def making(self) -> dict[int, str]:
        """Job id -> what the worker is doing with it ("writing", "singing 3/8", ...)."""
        return dict(self._making)

    @property
    def now_playing(self) -> Play | None:
        """The play in progress, or None between tracks and when stopped."""
        return self._now

    async def _play_loop(self) -> None:
        assert self._player is not None
        player = self._player
        previous: tuple[Play, bool] | None = None  # the last play, and whether it was cut
        try:
            while not self._stopping:
                record = self._take_buffered()
                if record is None:
                    if previous is not None:
                        await self._finish(*previous)
                        previous = None
                    try:
                        record = await self._wait_for_track()
                    except _StopPlaying:
                        break
                playing = asyncio.get_running_loop().create_task(player.play(record))
                if previous is not None:
                    await self._finish(*previous)
                    previous = None
                play = await self._start_play(record)
                self._prepare_next()
                try:
                    complete = await playing
                except OSError as exc:
                    log.warning("guild %d: cannot play %s: %s", self.guild_id, record.path, exc)
                    await self._mark_missing()
                    complete = False
                except Exception:
                    log.exception("guild %d: the player failed on %r", self.guild_id, record.title)
                    complete = False
                self._has_played = True
                if play is not None:
                    previous = (play, not complete)
        finally:
            # On shutdown the play stays open: `Store.recover()` puts the track back
            # at the front of the buffer, so it plays again after the restart.
            if previous is not None and not self._closing:
                await self._finish(*previous)
            self._now = None

    def _take_buffered(self) -> TrackRecord | None:
        """The next buffered track: a listener's request first, then the oldest.

        Checks the file (a stat, no reading); a vanished one is dropped here and
        marked missing in the store by `next_track`, with a warning.
        """
        while self._buffer:
            record = self._buffer.pop(self._next_index())
            if record.path.is_file():
                return record
            self.skipped_missing += 1
            self._spawn(self._mark_missing())
        return None

    def _next_index(self) -> int:
        """Where in the buffer the next track is: the first request, else the oldest."""
        return next((i for i, t in enumerate(self._buffer) if t.requester_id), 0)

    def _prepare_next(self) -> None:
        """Tell a player that can open tracks ahead which one comes next."""
        prepare = getattr(self._player, "prepare", None)
        if prepare is not None and self.playing and self._buffer:
            prepare(self._buffer[self._next_index()])

    async def _mark_missing(self) -> None:
        """`next_track` marks every buffered track whose file vanished as missing."""
        await self._db(self.store.next_track, self.guild_id)
        self._notify()
        await self.top_up()

    async def _wait_for_track(self) -> TrackRecord:
        """Wait for a fresh track, replaying the library while no fresh songs are made."""
        loop = asyncio.get_running_loop()
        dry_since: float | None = None
        try:
            while True:
                changed = self._changed
                if self._stopping:
                    raise _StopPlaying
                record = self._take_buffered()
                if record is not None:
                    return record
                if self.maker.busy_reason is not None:
                    replay = await self._pick_replay()
                    if replay is not None:
                        return replay
                elif dry_since is None and self._should_play():
                    dry_since = loop.time()
                    self._dry = True
                    log.warning("guild %d: buffer ran dry", self.guild_id)
                await changed.wait()
        finally:
            self._dry = False
            if dry_since is not None:
                seconds = loop.time() - dry_since
                self._spawn(self._db(self.store.record_underrun, self.guild_id, seconds=seconds))

    def _should_play(self) -> bool:
        """Something should be playing: the station played before and auto mode is on
        or songs are being made for it."""
        if not self._has_played:
            return False
        return (self.settings.auto_mode and self._audience) or bool(self._making)

    async def _pick_replay(self) -> TrackRecord | None:
        """The next library track to replay, favourites first (bot.favorites)."""
        return self._replays.pick(await self._db(self.store.replay_library, self.guild_id))

    async def _start_play(self, record: TrackRecord) -> Play | None:
        try:
            play = await self._db(self.store.start_playing, record.id)
        except StoreError as exc:
            log.error("guild %d: cannot record the play of %d: %s", self.guild_id, record.id, exc)
            return None
        self._now = play
        log.info("guild %d: now playing %r (%s)", self.guild_id, record.title, play.source)
        self._notify()
        # Only now has the track left the store's buffer: the top-up counts it out.
        self._spawn(self.top_up())
        return play

    async def _finish(self, play: Play, skipped: bool) -> None:
        try:
            await self._db(self.store.finish_playing, play.id, skipped=skipped)
        except StoreError as exc:
            log.error("guild %d: cannot finish play %d: %s", self.guild_id, play.id, exc)
        if self._now is not None and self._now.id == play.id:
            self._now = None
        self._notify()
