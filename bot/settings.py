"""The bot's settings: the engine's (`engine.settings.Settings`) plus the Discord and
station keys, read from the same `.env` under the same names.

Only the bot process holds these keys. Its child processes get the engine keys
alone (`engine.settings.engine_values`): the GPU worker and the Ray song workers
build their settings from those without reading `.env`, and no child's
environment holds the token (`engine.settings.without_secrets`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from engine.settings import AutoIsNone, EmptyIsNone, Settings, load_settings, project_path, setting


def _id_list(value: Any) -> Any:
    """`123, 456` (commas or spaces) -> a tuple of ids; empty -> none."""
    if isinstance(value, str):
        return tuple(part for part in re.split(r"[,\s]+", value.strip()) if part)
    return value


IdList = Annotated[tuple[Annotated[int, Field(ge=1)], ...], NoDecode, BeforeValidator(_id_list)]


class BotSettings(Settings):
    """The engine's keys plus the bot's. See docs/configuration.md for each key."""

    # Discord
    discord_token: Annotated[SecretStr | None, EmptyIsNone] = setting(
        None, "the bot token from the Discord developer portal"
    )
    dev_guild_id: Annotated[int | None, EmptyIsNone] = setting(
        None, "empty, or the id of one server (a positive integer)", ge=1
    )
    dj_role: str = setting("DJ", "a role name or role id; empty: Manage Server only", max_length=100)
    owner_ids: IdList = setting((), "empty, or Discord user ids separated by commas (besides the application's owner)")
    training_guilds: IdList = setting((), "empty, or server ids separated by commas whose admins may train adapters")
    vote_skip_ratio: float = setting(0.5, "a share of listeners above 0, up to 1", gt=0, le=1)
    idle_disconnect_seconds: int = setting(120, "an integer number of seconds from 0 (stay) to 86400", ge=0, le=86400)
    upload_max_mb: int = setting(8, "an integer number of MB from 1 to 100", ge=1, le=100)
    dataset_max_tracks: int = setting(50, "an integer from 1 to 1000", ge=1, le=1000)
    dataset_max_seconds: int = setting(300, "an integer number of seconds from 1 to 1800", ge=1, le=1800)
    shard_count: Annotated[int | None, AutoIsNone] = setting(
        None, "auto (Discord's recommendation) or a number of shards from 1 to 1024", ge=1, le=1024
    )

    # Station (bot/station/, bot/store/)
    buffer_size: int = setting(2, "an integer from 1 to 20", ge=1, le=20)
    tracks_disk_budget_mb: int = setting(2048, "an integer number of MB from 100 to 1048576", ge=100, le=1_048_576)
    max_queue_per_user: int = setting(3, "an integer from 1 to 50", ge=1, le=50)
    max_queue_per_guild: int = setting(20, "an integer from 1 to 500", ge=1, le=500)

    # The local listener (bot/local.py); relative to the project folder
    local_output_dir: Path = setting(Path("data/local-radio"), "a folder for what `python -m bot.local` plays")

    @field_validator("local_output_dir")
    @classmethod
    def _absolute_output(cls, value: Path) -> Path | None:
        return project_path(value)


def load_bot_settings(env_file: Path | None = None, **overrides: Any) -> BotSettings:
    """`engine.settings.load_settings` for the bot's keys as well."""
    return load_settings(env_file, cls=BotSettings, **overrides)
