"""Errors of the persistence layer (`bot.store`).

Every error names the problem and, where a value was refused, what is allowed,
so a command handler can show the message as it is.
"""

from __future__ import annotations

from typing import Any

from engine.text_safety import hide_paths, sanitize_text


class StoreError(Exception):
    """Base of every error the store raises; the station catches this one."""


class SchemaError(StoreError):
    """The database file cannot be used: not a database, too new, or a migration failed."""


class NotFoundError(StoreError, LookupError):
    """A row the caller named (a job, a track, a play) does not exist."""

    def __init__(self, what: str, ident: int, hint: str = ""):
        self.what = what
        self.ident = ident
        super().__init__(f"unknown {what} {ident}" + (f": {hint}" if hint else ""))


class UnknownGuildError(NotFoundError):
    """The guild has no row yet: the station creates it with `Store.ensure_guild`."""

    def __init__(self, guild_id: int):
        super().__init__("guild", guild_id, "call ensure_guild() when the bot joins it")
        self.guild_id = guild_id


class InvalidValueError(StoreError, ValueError):
    """A value was refused. `field` names it and `allowed` says what is accepted."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {field} {shown_value(value)}: allowed is {allowed}")


def shown_value(value: Any) -> str:
    """A refused value as a message may echo it: text made safe (no mentions, links or
    control characters or host paths; people type these values into Discord), long text
    cut to 30 characters."""
    if not isinstance(value, str):
        return hide_paths(sanitize_text(repr(value), 60))
    clean = hide_paths(sanitize_text(value))
    if len(value) > 40:
        return f"{clean[:30]!r}... ({len(value)} characters)"
    return repr(clean)


class QueueFullError(StoreError):
    """A request would exceed the per-user or per-guild queue limit."""

    def __init__(self, scope: str, current: int, limit: int, message: str):
        self.scope = scope
        self.current = current
        self.limit = limit
        super().__init__(message)


class StateError(StoreError):
    """The row is not in a state that allows the operation (e.g. finishing a done job)."""
