"""Station: one guild's radio. Queue, buffer, auto mode, requests, play loop, status.

The station keeps nothing that matters only in memory: its settings, queue,
buffer and history live in the store (SQLite), which it calls through
`asyncio.to_thread`, so the event loop never waits on the disk and a restart
resumes where it stopped. It has no discord import: the player it drives is
anything with the `Player` methods (the voice player in the bot, the local
listener in `bot.local`).

Making songs. Listeners' requests join the store's fair queue (round-robin
between listeners, per-listener and per-station limits). In auto mode the
station keeps `buffer_size` songs buffered or in the making by queueing
auto-fill jobs, which run only when no request waits. It does not run jobs
itself: the `StationManager` (bot.station.manager) hands jobs to the GPU worker when
the worker has a free slot, taking them round-robin across stations, requests
first. The station then follows each job (progress, spec, result) and puts
the finished track in its buffer.

Playing. The play loop hands the player the next track the moment the current
one ends: a buffered listener request first, then the oldest buffered track.
The store's bookkeeping (finish the old play, start the new one) runs after
the next track has started, so it adds nothing to the gap. A track whose file
vanished is skipped with a warning. When the buffer is empty while something
should play (auto mode, or requests in the making) and the worker is working,
listeners hear silence: an *underrun*, counted in the stats with its length.
When the GPU is busy (paused for training) or the worker is unavailable, the
station plays its buffer and then replays its library, and says so in its
status.

Taste. An auto-fill job carries the lean the listeners' reactions taught
(bot.taste.profile: `StationStyle.lean`), unless taste is off or the job is one of
the one in five that explore; the library replay prefers favourites
(bot.favorites).

Adapters. A station may sing with a LoRA/LoKR adapter (`set_adapter`: a
folder name in ADAPTERS_DIR and a scale); every job it hands out carries them
and the worker switches to them before singing. A job that fails because the
adapter cannot be loaded switches the station back to the base model, so it
does not fail job after job, and its status says why.

The package: `config` (limits, the player and song-maker protocols, status),
`base` (shared state), `making` (jobs and the buffer), `playing` (the play
loop) and `station` (the `Station` that joins them).
"""

from bot.station.config import (
    CHANNEL_KEYS,
    STYLE_KEYS,
    Player,
    RequestReceipt,
    SongMaker,
    StationConfig,
    StationStatus,
)
from bot.station.station import Station

__all__ = [
    "CHANNEL_KEYS",
    "STYLE_KEYS",
    "Player",
    "RequestReceipt",
    "SongMaker",
    "Station",
    "StationConfig",
    "StationStatus",
]
