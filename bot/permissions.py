"""Who may run the station commands: members with Manage Server, or with the DJ role.

Two layers, because either alone is not enough. `default_permissions` (set on
each station command) makes Discord hide the command from members without
Manage Server, but a server admin can change that per role, and Discord does
not check anything when a client sends the interaction anyway. So the cog
checks for real with `is_dj` before every station command.

The DJ role is the guild's own (`/radio_settings dj_role:`) or else `DJ_ROLE`
from the settings, given as a role id or a role name (case-insensitive).
"""

from __future__ import annotations

from collections.abc import Iterable

import discord
from discord import app_commands

#: What `default_permissions` asks for on station commands.
DJ_PERMISSIONS = discord.Permissions(manage_guild=True)


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
