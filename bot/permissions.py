"""Who may run each command, declared at the command; and who is a DJ.

A command says who may run it with one of the levels below, put above
`@app_commands.command`: `@anyone`, `@dj_only` (Manage Server or the DJ
role), `@trainer_only` (the bot's owner, or admins of a server in
TRAINING_GUILDS: bot.ownership) or `@bot_owner_only`. The level sets both
layers, because either alone is not enough: `default_permissions` makes Discord
hide the command from members without Manage Server, but a server admin can
change that per role, and Discord does not check anything when a client sends
the interaction anyway; so the level is also an `app_commands.check` that
checks for real before every run and raises `NotAllowedError`, whose message
says who may (the command tree's error handler, bot.replies, shows it to the
member alone). `/radio_help` lists the commands under their level's heading.

The DJ role is the guild's own (`/radio_settings dj_role:`) or else `DJ_ROLE`
from the settings, given as a role id or a role name (case-insensitive).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import discord
from discord import app_commands

if TYPE_CHECKING:
    from bot.app import RadioBot

#: What `default_permissions` asks for on every command that is not for everyone.
MANAGE_SERVER = discord.Permissions(manage_guild=True)
#: The key of a command's level in `Command.extras`.
ACCESS = "access"

CommandT = TypeVar("CommandT", bound=app_commands.Command[Any, ..., Any])


class NotAllowedError(app_commands.CheckFailure):
    """The member may not run this command; the message says who may."""


def has_manage_server(permissions: discord.Permissions) -> bool:
    return permissions.manage_guild or permissions.administrator


def role_matches(role: discord.abc.Snowflake, wanted: str) -> bool:
    """`wanted` is the role's id or (any case) its name."""
    wanted = wanted.strip()
    if not wanted:
        return False
    if wanted.isdigit():
        return role.id == int(wanted)
    return getattr(role, "name", "").casefold() == wanted.casefold()


def is_dj(
    roles: Iterable[discord.abc.Snowflake],
    permissions: discord.Permissions,
    guild_role_id: int | None,
    default_role: str,
) -> bool:
    """Manage Server (or Administrator), or the guild's DJ role, else the default one."""
    if has_manage_server(permissions):
        return True
    if guild_role_id is not None:
        return any(role.id == guild_role_id for role in roles)
    return any(role_matches(role, default_role) for role in roles)


def describe_dj_role(guild: discord.Guild | None, guild_role_id: int | None, default_role: str) -> str:
    """The DJ role as members should read it: a role mention, or a name, or 'none'."""
    if guild_role_id is not None:
        return f"<@&{guild_role_id}>"
    if not default_role.strip():
        return "none (Manage Server only)"
    if guild is not None:
        for role in guild.roles:
            if role_matches(role, default_role):
                return f"<@&{role.id}>"
    return f"'{discord.utils.escape_markdown(default_role.strip())}' (no such role yet)"


def require_dj(
    member: discord.Member | discord.User,
    permissions: discord.Permissions,
    guild_role_id: int | None,
    default_role: str,
    command: str,
) -> None:
    """Raise `NotAllowedError` unless the member may run station command `command`."""
    roles = member.roles if isinstance(member, discord.Member) else []
    if is_dj(roles, permissions, guild_role_id, default_role):
        return
    guild = member.guild if isinstance(member, discord.Member) else None
    role = describe_dj_role(guild, guild_role_id, default_role)
    raise NotAllowedError(
        f"/{command} is a station command: it needs the Manage Server permission "
        f"or the DJ role ({role}). Listening commands such as /radio_request and "
        "/radio_skip are open to everyone."
    )


@dataclass(frozen=True, eq=False)
class Access:
    """Who may run a command. As a decorator (above `@app_commands.command`) it
    declares itself on the command: see the module docstring."""

    name: str
    #: Who may, as `/radio_help` heads the commands of this level.
    heading: str
    #: What Discord asks for to show the command; None: everyone sees it.
    default_permissions: discord.Permissions | None = None
    #: Raises `NotAllowedError` (saying who may) unless the member may; None: anyone may.
    require: Callable[[RadioBot, discord.Interaction], Awaitable[None]] | None = None

    def __call__(self, command: CommandT) -> CommandT:
        if not isinstance(command, app_commands.Command):
            raise TypeError(f"put @{self.name} above @app_commands.command: it declares a command's level")
        if ACCESS in command.extras:
            raise TypeError(f"/{command.qualified_name} declares who may run it twice")
        command.extras[ACCESS] = self
        if self.require is None:
            return command
        command.checks.append(self.check)
        root = command.root_parent
        if root is None:
            app_commands.guild_only()(command)
            app_commands.default_permissions(self.default_permissions)(command)
        elif root.default_permissions != self.default_permissions or not root.guild_only:
            # Discord shows or hides a group as a whole: it must ask what its commands' level asks.
            raise TypeError(
                f"/{command.qualified_name} is {self.name}: give its group guild_only=True "
                f"and default_permissions={self.name}.default_permissions"
            )
        return command

    async def check(self, interaction: discord.Interaction) -> bool:
        """The check at run time: True, or `NotAllowedError` saying who may."""
        if self.require is None:
            return True
        if interaction.guild is None or not isinstance(interaction.user, discord.Member):
            raise app_commands.NoPrivateMessage()
        await self.require(cast("RadioBot", interaction.client), interaction)
        return True

    async def allows(self, interaction: discord.Interaction) -> bool:
        """The same check without the refusal, for autocomplete (which runs no checks)."""
        try:
            return await self.check(interaction)
        except app_commands.CheckFailure:
            return False


def access_of(command: app_commands.Command[Any, ..., Any]) -> Access | None:
    """The level `command` declares, or None if it declares none."""
    level = command.extras.get(ACCESS)
    return level if isinstance(level, Access) else None


def command_name(interaction: discord.Interaction) -> str:
    """The command as members type it, e.g. `radio_dataset add`."""
    return interaction.command.qualified_name if interaction.command else "this command"


async def _require_dj(bot: RadioBot, interaction: discord.Interaction) -> None:
    bot.radio.require_dj(interaction)


async def _require_trainer(bot: RadioBot, interaction: discord.Interaction) -> None:
    await bot.training_access.require_trainer(interaction)


async def _require_owner(bot: RadioBot, interaction: discord.Interaction) -> None:
    await bot.training_access.require_owner(interaction, f"/{command_name(interaction)}")


anyone = Access("anyone", "Listening (everyone)")
dj_only = Access("dj_only", "Station (DJs: Manage Server or the DJ role)", MANAGE_SERVER, _require_dj)
trainer_only = Access(
    "trainer_only",
    "Training (the bot's owner; server admins where the owner allows it)",
    MANAGE_SERVER,
    _require_trainer,
)
bot_owner_only = Access("bot_owner_only", "The bot's owner", MANAGE_SERVER, _require_owner)
#: Every level, in the order `/radio_help` lists them.
LEVELS = (anyone, dj_only, trainer_only, bot_owner_only)
