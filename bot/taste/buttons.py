"""👍 and 👎 on the now-playing message: how listeners tell the station what they like.

The buttons are persistent: their custom id names the vote and the track
(`radio:like:42`), and `ReactionButton` is registered with
`bot.add_dynamic_items` in `setup_hook`, so a button on a message posted
before a restart still works after it. The counts are the buttons' labels;
each press updates them.

A custom id arrives from Discord and may be forged: the track must belong to
the guild the button was pressed in, and have been played there (the store
checks, `Store.react`). Only listeners in the radio's voice channel count, one
reaction per listener per song (a new press replaces their earlier one).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.render import safe
from bot.replies import NO_MENTIONS
from bot.store import ReactionTally, StoreError

if TYPE_CHECKING:
    from bot.radio import Radio

log = logging.getLogger("bot.taste.buttons")

VOTES = {"like": 1, "dislike": -1}
EMOJI = {"like": "👍", "dislike": "👎"}


class ReactionButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"radio:(?P<vote>like|dislike):(?P<track>[0-9]{1,19})",
):
    """One of the two buttons of a track; see the module docstring."""

    def __init__(self, vote: str, track_id: int, count: int = 0) -> None:
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji=EMOJI[vote],
                label=str(count),
                custom_id=f"radio:{vote}:{track_id}",
            )
        )
        self.vote = vote
        self.track_id = track_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> ReactionButton:
        return cls(match["vote"], int(match["track"]))

    async def callback(self, interaction: discord.Interaction) -> Any:
        radio: Radio = interaction.client.radio  # type: ignore[attr-defined]
        try:
            await press(radio, interaction, self.vote, self.track_id)
        except (StoreError, VoteRefused) as exc:
            await _tell(interaction, f"⚠️ {exc}")
        except Exception:  # a press must always get an answer
            log.exception("a %s press on track %d failed", self.vote, self.track_id)
            await _tell(interaction, "⚠️ Something went wrong on the radio's side; the details are in the bot's log.")


async def _tell(interaction: discord.Interaction, text: str) -> None:
    """Tell only the member who pressed (never `refuse`: after an update its
    "original response" is the now-playing message itself)."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as exc:
        log.warning("cannot answer a button press: %s", exc)


class VoteRefused(Exception):
    """A press that does not count; the message says why."""


def reaction_view(track_id: int, tally: ReactionTally) -> discord.ui.View:
    """The two buttons of a track, with its counts."""
    view = discord.ui.View(timeout=None)
    view.add_item(ReactionButton("like", track_id, tally.likes))
    view.add_item(ReactionButton("dislike", track_id, tally.dislikes))
    return view


async def press(radio: Radio, interaction: discord.Interaction, vote: str, track_id: int) -> None:
    """Count a listener's press, update the counts on the message, tell the listener."""
    member = interaction.user
    guild_id = interaction.guild_id
    if guild_id is None or not isinstance(member, discord.Member):
        raise VoteRefused("These buttons work in a server only.")
    station = radio.known_station(guild_id)
    channel = radio.voice_channel(guild_id)
    if station is None or channel is None:
        raise VoteRefused("The radio is not on air here: votes count from its listeners.")
    if member.id not in {listener.id for listener in radio.listeners(channel)}:
        raise VoteRefused(f"Only listeners can vote: join {channel.mention} first.")

    def record() -> tuple[ReactionTally, str]:
        tally = station.store.react(guild_id, track_id, member.id, VOTES[vote])
        return tally, station.store.get_track(track_id).title

    tally, title = await asyncio.to_thread(record)
    await interaction.response.edit_message(view=reaction_view(track_id, tally))
    name = safe(title, 100)
    if tally.previous == VOTES[vote]:
        text = f"You {vote}d **{name}** already."
    elif vote == "like":
        text = f"👍 You like **{name}**: the station learns from it."
    else:
        text = f"👎 You do not like **{name}**: the station learns from it."
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
