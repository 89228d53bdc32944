"""Vote-skip: a song is skipped once enough of the listeners in the channel ask.

`VOTE_SKIP_RATIO` of the listeners (bots not counted), rounded up, at least
one. Votes are kept in the store per play, so a listener voting twice counts
once, and a vote on a song that has just ended is refused. The song's
requester and DJs skip at once (the cog decides who that is).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from bot.station import Station
from bot.store import Play, StateError, check_int


@dataclass(frozen=True)
class SkipOutcome:
    skipped: bool
    votes: int
    needed: int
    counted: bool  # False when this listener had voted already


def votes_needed(listeners: int, ratio: float) -> int:
    """How many votes skip a song with `listeners` in the channel."""
    check_int("listeners", listeners, 0, 1_000_000)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio={ratio}: allowed is above 0, up to 1")
    return max(1, math.ceil(round(ratio * listeners, 9)))


async def vote_skip(station: Station, play: Play, user_id: int, listeners: int, ratio: float) -> SkipOutcome:
    """Count `user_id`'s vote on `play`; skip it when the votes reach the threshold.

    Raises `StateError` when the play has ended meanwhile.
    """
    needed = votes_needed(listeners, ratio)
    tally = await asyncio.to_thread(station.store.record_vote, play.id, user_id)
    skipped = tally.count >= needed
    if skipped:
        skip_now(station, play)
    return SkipOutcome(skipped, tally.count, needed, tally.added)


def skip_now(station: Station, play: Play) -> None:
    """Skip `play` if it is still the one playing; `StateError` when it is not."""
    current = station.now_playing
    if current is None or current.id != play.id:
        raise StateError("that song has already ended")
    station.skip()
