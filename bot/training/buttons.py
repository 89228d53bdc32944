"""The button under a finished run's message that puts its adapter on air.

Like the 👍/👎 buttons (bot.taste.buttons) it is persistent: its custom id
names the adapter (`radio:onair:g<server id>-<name>`), and `OnAirButton` is
registered with `bot.add_dynamic_items`, so it works after a restart too. The
id arrives from Discord and may be forged: the adapter must be one of the
server the button is pressed in, and the member must be a DJ there (as for
`/radio_adapter`). The station sings its next songs with it, at its scale.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bot.adapter_library import key_name, key_owner
from bot.render import safe
from bot.replies import NO_MENTIONS, RadioError
from bot.store import StoreError

log = logging.getLogger("bot.training.buttons")


class OnAirButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"radio:onair:(?P<key>g[1-9][0-9]{0,19}-[A-Za-z0-9][A-Za-z0-9_.-]{0,63})",
):
    def __init__(self, key: str) -> None:
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.primary,
                emoji="🎚️",
                label="Put on air",
                custom_id=f"radio:onair:{key}",
            )
        )
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> OnAirButton:
        return cls(match["key"])

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            text = await put_on_air(interaction, self.key)
        except (RadioError, StoreError) as exc:
            text = f"⚠️ {exc}"
        except Exception:  # a press must always get an answer
            log.exception("putting adapter %s on air failed", self.key)
            text = "⚠️ Something went wrong on the radio's side; the details are in the bot's log."
        try:
            await interaction.response.send_message(text, ephemeral=text.startswith("⚠️"), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("cannot answer an on-air press: %s", exc)


async def put_on_air(interaction: discord.Interaction, key: str) -> str:
    """The station of the server pressed in sings with adapter `key` from its next song."""
    radio = interaction.client.radio  # type: ignore[attr-defined]
    if interaction.guild_id is None or key_owner(key) != interaction.guild_id:
        raise RadioError("This adapter belongs to another server.")
    if not radio.is_dj(interaction):
        raise RadioError(
            "Putting an adapter on air is for DJs: it needs the Manage Server permission or "
            "the DJ role, as /radio_adapter does."
        )
    station = await radio.station(interaction.guild_id)
    settings = await station.set_adapter(key_name(key))
    who, name = interaction.user.mention, safe(key_name(key), 64)
    return (
        f"🎚️ {who} put adapter **{name}** on air: the station sings its next songs with it "
        f"(scale {settings.adapter_scale:g})."
    )


def on_air_view(key: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(OnAirButton(key))
    return view
