"""Who may use what every server shares: the GPU, the trainer and the adapter library.

One bot serves many servers, and whoever invites it to their own server has
Manage Server there. So what reaches beyond one server is not left to server
admins:

- **The bot's owner**: the application's owner in the developer portal, or the
  admins and developers of its team, plus the ids in `OWNER_IDS`. The owner may
  train adapters from any server, see and stop any run, and share a server's
  adapter with every server.
- **A server in `TRAINING_GUILDS`**: its admins (Manage Server) may train
  adapters too. A run belongs to the server it was started from: its status
  and its stop are for that server's trainers (and the owner), nowhere else.

The owner ids are read from Discord once (`GET /oauth2/applications/@me`) and
kept; a failed read is tried again next time and meanwhile only `OWNER_IDS`
count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import discord

from bot.permissions import NotAllowedError, command_name, has_manage_server

log = logging.getLogger("bot.ownership")

TRAINING_REFUSAL = (
    "/{command} is for the bot's owner: a training run takes the GPU from every server "
    "the radio plays in. The owner can allow this server's admins with TRAINING_GUILDS."
)


def application_owners(app: discord.AppInfo) -> set[int]:
    """The application's owner, or its team's admins and developers who joined the team."""
    if app.team is None:
        return {app.owner.id}
    allowed = (discord.TeamMemberRole.admin, discord.TeamMemberRole.developer)
    return {
        member.id
        for member in app.team.members
        if member.role in allowed and member.membership_state == discord.TeamMembershipState.accepted
    }


class Owners:
    """The bot's owners: the application's (read from Discord) and `OWNER_IDS`."""

    def __init__(self, client: discord.Client, extra: Iterable[int] = ()):
        self.client = client
        self.extra = frozenset(extra)
        self._application: frozenset[int] | None = None
        self._lock = asyncio.Lock()

    async def ids(self) -> frozenset[int]:
        async with self._lock:
            if self._application is None:
                try:
                    app = await self.client.application_info()
                except discord.HTTPException as exc:
                    log.warning("cannot read the application's owner from Discord: %s", exc)
                    return self.extra
                self._application = frozenset(application_owners(app))
                log.info("bot owner(s): %s", ", ".join(map(str, sorted(self.ids_now))))
        return self.ids_now

    @property
    def ids_now(self) -> frozenset[int]:
        """The owners known so far, without asking Discord."""
        return self.extra | (self._application or frozenset())

    async def is_owner(self, user_id: int) -> bool:
        return user_id in await self.ids()


class TrainingAccess:
    """Who may train, and who may see and stop a run. See the module docstring."""

    def __init__(self, owners: Owners, training_guilds: Iterable[int] = ()):
        self.owners = owners
        self.training_guilds = frozenset(training_guilds)

    async def may_train(self, interaction: discord.Interaction) -> bool:
        if await self.owners.is_owner(interaction.user.id):
            return True
        return interaction.guild_id in self.training_guilds and has_manage_server(interaction.permissions)

    async def require_trainer(self, interaction: discord.Interaction) -> None:
        """Raise `NotAllowedError` (saying who may) unless the member may train here."""
        if not await self.may_train(interaction):
            raise NotAllowedError(TRAINING_REFUSAL.format(command=command_name(interaction)))

    async def controls_run(self, interaction: discord.Interaction, run_guild: int) -> bool:
        """May this member see and stop a run started from server `run_guild`?"""
        if await self.owners.is_owner(interaction.user.id):
            return True
        return interaction.guild_id == run_guild and await self.may_train(interaction)

    async def require_owner(self, interaction: discord.Interaction, what: str) -> None:
        if not await self.owners.is_owner(interaction.user.id):
            raise NotAllowedError(f"{what} is for the bot's owner only.")
