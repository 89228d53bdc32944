"""Which library song a station replays while no fresh songs are made (the GPU is busy).

The library is every played song whose file is kept. Favourites (more 👍 than
👎) come first: two replays in three are favourites, taken round and round,
oldest first; the third is one of the other songs, the same way. Songs
listeners disliked (more 👎 than 👍) are replayed only when nothing else is
left. With no favourites every replay is from the rest, so a station without
reactions replays its library in order, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.store import TrackRecord

#: Of every `FAVORITE_TURNS + 1` replays, this many are favourites.
FAVORITE_TURNS = 2


class ReplayPicker:
    """Round-robin through favourites and the rest; see the module docstring."""

    def __init__(self) -> None:
        self._last = {"favorites": 0, "others": 0}  # the last track id replayed from each
        self._turn = 0

    def pick(self, library: Sequence[tuple[TrackRecord, int]]) -> TrackRecord | None:
        """The next song of `library` (records with their 👍 minus 👎, oldest first)."""
        favorites = [record for record, net in library if net > 0]
        others = [record for record, net in library if net == 0]
        disliked = [record for record, net in library if net < 0]
        others = others or disliked
        favorite_turn = self._turn % (FAVORITE_TURNS + 1) < FAVORITE_TURNS
        if favorites and (favorite_turn or not others):
            group, songs = "favorites", favorites
        elif others:
            group, songs = "others", others
        else:
            return None
        self._turn += 1
        later = [record for record in songs if record.id > self._last[group]]
        pick = later[0] if later else songs[0]
        self._last[group] = pick.id
        return pick
